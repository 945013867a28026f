package cpython

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// tuple builds a tuple of the given items.
func (h *fakeHeap) tuple(items ...uint64) uint64 {
	a, b := h.object(h.typ("tuple", tpflagsTupleSubclass), h.l.TupleObItem+8*len(items)+8)
	put64(b, h.l.VarObjectObSize, uint64(len(items)))
	for i, it := range items {
		put64(b, h.l.TupleObItem+8*i, it)
	}
	return a
}

// fakeLineTable returns a line table in which code unit k (2 bytes; one
// byte-offset step of 2 on 2.7 too) has line first+k, for n units.
func fakeLineTable(f LineFormat, n int) []byte {
	var t []byte
	switch f {
	case Locations:
		t = append(t, 0x80|locNoColumns<<3, 0)
		for k := 1; k < n; k++ {
			t = append(t, 0x80|locNoColumns<<3, 2) // +1
		}
	case Linetable310:
		for k := 0; k < n; k++ {
			d := byte(1)
			if k == 0 {
				d = 0
			}
			t = append(t, 2, d)
		}
	default:
		for k := 1; k < n; k++ {
			t = append(t, 2, 1)
		}
	}
	return t
}

// fakeCode builds a code object with nunits code units and local names.
func (h *fakeHeap) fakeCode(name, qual, file string, first, nunits int, locals []string) uint64 {
	l := h.l
	size := l.SizeofPyCodeObject + 2*nunits + 8
	a, b := h.object(h.typ("code", 0), size)
	put64(b, l.CodeCoName, h.str(name, 0, false))
	if l.CodeCoQualname >= 0 {
		put64(b, l.CodeCoQualname, h.str(qual, 0, false))
	}
	put64(b, l.CodeCoFilename, h.str(file, 0, false))
	put32(b, l.CodeCoFirstlineno, uint32(first))
	table := h.bytesObj(string(fakeLineTable(LineFormatFor(l.Major, l.Minor), nunits)))
	if l.CodeCoLnotab >= 0 {
		put64(b, l.CodeCoLnotab, table)
	} else {
		put64(b, l.CodeCoLinetable, table)
	}
	var names []uint64
	for _, n := range locals {
		names = append(names, h.str(n, 0, false))
	}
	if l.CodeCoLocalsplusnames >= 0 {
		put64(b, l.CodeCoLocalsplusnames, h.tuple(names...))
		kinds := make([]byte, len(names))
		for i := range kinds {
			kinds[i] = coFastLocal
		}
		put64(b, l.CodeCoLocalspluskinds, h.bytesObj(string(kinds)))
	} else {
		put64(b, l.CodeCoVarnames, h.tuple(names...))
		put64(b, l.CodeCoCellvars, h.tuple())
		put64(b, l.CodeCoFreevars, h.tuple())
		put32(b, l.CodeCoNlocals, uint32(len(names)))
	}
	return a
}

// fakeFrame builds a frame running code at code unit k, with caller back
// and local values vals; owner is used on 3.11+.
func (h *fakeHeap) fakeFrame(back, code uint64, k int, owner byte, vals ...uint64) uint64 {
	l := h.l
	if !l.AtLeast(3, 11) {
		a, b := h.object(h.typ("frame", 0), l.FrameFLocalsplus+8*len(vals)+8)
		put64(b, l.FrameFBack, back)
		put64(b, l.FrameFCode, code)
		lasti := 2 * k
		if l.Minor == 10 {
			lasti = k
		}
		put32(b, l.FrameFLasti, uint32(lasti))
		for i, v := range vals {
			put64(b, l.FrameFLocalsplus+8*i, v)
		}
		return a
	}
	a, b := h.alloc(l.InterpFrameLocalsplus + 8*len(vals) + 8)
	put64(b, l.InterpFramePrevious, back)
	b[l.InterpFrameOwner] = owner
	ip := code + uint64(l.CodeCoCodeAdaptive) + uint64(2*k)
	if l.Minor >= 13 {
		ref := code
		if l.Minor >= 14 && code != 0 {
			ref |= 1 // a _PyStackRef with its tag bit
		}
		put64(b, l.InterpFrameFExecutable, ref)
		put64(b, l.InterpFrameInstrPtr, ip)
	} else {
		put64(b, l.InterpFrameFCode, code)
		put64(b, l.InterpFramePrevInstr, ip)
	}
	for i, v := range vals {
		if l.Minor >= 14 && v != 0 {
			v |= 1
		}
		put64(b, l.InterpFrameLocalsplus+8*i, v)
	}
	return a
}

// fakeStack builds <module> -> f(x) -> g() (g innermost) and returns the
// top frame.
func (h *fakeHeap) fakeStack() uint64 {
	mod := h.fakeCode("<module>", "<module>", "/m\u00e9.py", 1, 20, nil)
	f := h.fakeCode("f", "C.f", "/m\u00e9.py", 10, 20, []string{"x", "unbound"})
	g := h.fakeCode("g\u51fd", "g\u51fd", "/g.py", 30, 20, nil)
	f1 := h.fakeFrame(0, mod, 5, 0)
	if h.l.AtLeast(3, 12) {
		// A C-stack shim between two Python frames is not shown.
		shim := byte(ownedByCStack312)
		if h.l.AtLeast(3, 14) {
			shim = ownedByCStack14
		}
		f1 = h.fakeFrame(f1, mod, 0, shim)
	}
	f2 := h.fakeFrame(f1, f, 3, 0, h.intObj([]uint32{42}, false, false), 0)
	return h.fakeFrame(f2, g, 7, 0)
}

func TestFramesFake(t *testing.T) {
	for _, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) {
			top := h.fakeStack()
			frames, err := Frames(h.m, h.l, top, FrameOptions{Locals: true})
			if err != nil {
				t.Fatalf("Frames: %v", err)
			}
			fq := "f"
			if h.l.AtLeast(3, 11) {
				fq = "C.f"
			}
			want := []struct {
				fn, file string
				line     int
			}{{"<module>", "/m\u00e9.py", 6}, {fq, "/m\u00e9.py", 13}, {"g\u51fd", "/g.py", 37}}
			if len(frames) != len(want) {
				t.Fatalf("got %d frames (%+v), want %d", len(frames), frames, len(want))
			}
			for i, w := range want {
				f := frames[i]
				if f.Function != w.fn || f.File != w.file || f.Line != w.line {
					t.Errorf("frame %d: got %s %s:%d, want %s %s:%d", i, f.Function, f.File, f.Line, w.fn, w.file, w.line)
				}
			}
			if got := frames[1].Locals; len(got) != 1 || got["x"] != "42" || len(frames[1].LocalNames) != 1 {
				t.Errorf("locals of f: %v %v", got, frames[1].LocalNames)
			}

			// A loop in the chain.
			code := h.fakeCode("loop", "loop", "/l.py", 1, 4, nil)
			a := h.fakeFrame(0, code, 1, 0)
			b := h.fakeFrame(a, code, 1, 0)
			put64(mustRegion(t, h, a), frameBackOff(h), b)
			fs, err := Frames(h.m, h.l, b, FrameOptions{})
			if !errors.Is(err, ErrFrameCycle) || len(fs) != 2 {
				t.Errorf("cycle: %d frames, err %v", len(fs), err)
			}
			// An unreadable caller: the frames read so far come back.
			c := h.fakeFrame(0xdead0000, code, 1, 0)
			fs, err = Frames(h.m, h.l, c, FrameOptions{})
			if err == nil || len(fs) != 1 || fs[0].Function != "loop" {
				t.Errorf("bad caller: %d frames, err %v", len(fs), err)
			}
			// Depth bound.
			fs, err = Frames(h.m, h.l, top, FrameOptions{MaxDepth: 1})
			if !errors.Is(err, ErrTooDeep) || len(fs) != 1 {
				t.Errorf("MaxDepth 1: %d frames, err %v", len(fs), err)
			}
		})
	}
}

func frameBackOff(h *fakeHeap) int {
	if h.l.AtLeast(3, 11) {
		return h.l.InterpFramePrevious
	}
	return h.l.FrameFBack
}

// mustRegion returns the bytes mapped at addr (the start of a region).
func mustRegion(t *testing.T, h *fakeHeap, addr uint64) []byte {
	t.Helper()
	for _, r := range h.regions {
		if r.addr == addr {
			return r.data
		}
	}
	t.Fatalf("no region at %#x", addr)
	return nil
}

// image returns the heap as one contiguous byte slice starting at
// fakeBase (gaps zeroed), the form fuzz inputs take.
func (h *fakeHeap) image() []byte {
	img := make([]byte, h.next-fakeBase)
	for _, r := range h.regions {
		copy(img[r.addr-fakeBase:], r.data)
	}
	return img
}

const fakeBase = 0x10000

// fuzzLayoutVersion maps a fuzz byte to one of fakeVersions.
func fuzzHeap(t *testing.T, ver uint8, img []byte) *fakeHeap {
	v := fakeVersions[int(ver)%len(fakeVersions)]
	h := newFakeHeap(t, v[0], v[1])
	h.m.Map(fakeBase, img)
	return h
}

// FuzzFrames walks frames over random or corrupted memory, as stacks
// does, as locks does (what each frame refers to) and as record does (the
// Sampler): it must not panic, loop or allocate without bound. Inputs are memory images of
// tens of KiB: run with -fuzzminimizetime 0, or minimizing a new input
// takes minutes.
func FuzzFrames(f *testing.F) {
	for i, v := range fakeVersions {
		h := newFakeHeap(f, v[0], v[1])
		top := h.fakeStack()
		f.Add(h.image(), uint8(i), uint32(top-fakeBase), true)
	}
	f.Fuzz(func(t *testing.T, img []byte, ver uint8, top uint32, locals bool) {
		if len(img) > 1<<20 {
			return
		}
		h := fuzzHeap(t, ver, img)
		fs, _ := Frames(h.m, h.l, fakeBase+uint64(top), FrameOptions{Locals: locals})
		if len(fs) > DefaultMaxDepth {
			t.Fatalf("%d frames", len(fs))
		}
		// As pyglass locks reads them: what each frame refers to.
		refs := NewRefReader(h.m, h.l)
		for _, fr := range fs {
			refs.Refs(fr)
		}
		// As pyglass record reads them: the Sampler, its code objects.
		s := NewSampler(h.m, h.l)
		stack, _ := s.Stack(fakeBase+uint64(top), 64, nil)
		if len(stack) > 64 {
			t.Fatalf("%d sampled frames", len(stack))
		}
		for _, sf := range stack {
			s.Code(sf.Code)
		}
		s.Revalidate(h.m)
	})
}

// FuzzString decodes strings, reprs and the other objects pyglass reads
// (numbers, tuples, locks, deques, attributes) over random or corrupted
// memory.
func FuzzString(f *testing.F) {
	for i, v := range fakeVersions {
		h := newFakeHeap(f, v[0], v[1])
		objs := []uint64{h.str("h\u00e9llo", 0, false), h.str("\U0001f600", 0, false), h.bytesObj("b"), h.intObj([]uint32{1, 2}, true, true)}
		if v[0] == 3 && v[1] <= 11 {
			objs = append(objs, h.str("legacy", 0, true))
		}
		img := h.image()
		for _, o := range objs {
			f.Add(img, uint8(i), uint32(o-fakeBase))
		}
	}
	f.Fuzz(func(t *testing.T, img []byte, ver uint8, obj uint32) {
		if len(img) > 1<<20 {
			return
		}
		h := fuzzHeap(t, ver, img)
		addr := fakeBase + uint64(obj)
		if s, err := String(h.m, h.l, addr, MaxNameLen); err == nil && len(s) > 4*MaxNameLen {
			t.Fatalf("string of %d bytes", len(s))
		}
		Repr(h.m, h.l, addr)
		DictGet(h.m, h.l, addr, "k")
		AttrGet(h.m, h.l, addr, "k")
		// The objects pyglass locks and the leak reports decode.
		TypeName(h.m, h.l, addr)
		Int(h.m, h.l, addr)
		Float(h.m, h.l, addr)
		Len(h.m, h.l, addr)
		if items, err := TupleItems(h.m, h.l, addr, 64); err == nil && len(items) > 64 {
			t.Fatalf("%d tuple items", len(items))
		}
		ReadSync(h.m, h.l, addr)
		ClassName(h.m, h.l, addr)
		DequeLen(h.m, h.l, addr)
		InstanceAttr(h.m, h.l, addr, "k")
		AttrNameOf(h.m, h.l, addr, fakeBase)
		ParkedAt(h.m, h.l, addr)
		ReadCode(h.m, h.l, addr)
		DictGetInt(h.m, h.l, addr, 1)
	})
}

// TestWriteFuzzSeeds regenerates the committed seed corpora under
// testdata/fuzz when PYGLASS_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PYGLASS_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set PYGLASS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	write := func(name, id string, vals ...any) {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := "go test fuzz v1\n"
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				s += fmt.Sprintf("[]byte(%q)\n", v)
			default:
				s += fmt.Sprintf("%T(%v)\n", v, v)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, id), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		top := h.fakeStack()
		img := h.image()
		// A corrupted copy: every 97th byte flipped.
		bad := append([]byte(nil), img...)
		for j := 0; j < len(bad); j += 97 {
			bad[j] ^= 0xff
		}
		write("FuzzFrames", fmt.Sprintf("stack-%d.%d", v[0], v[1]), img, uint8(i), uint32(top-fakeBase), true)
		write("FuzzFrames", fmt.Sprintf("corrupt-%d.%d", v[0], v[1]), bad, uint8(i), uint32(top-fakeBase), true)
		h2 := newFakeHeap(t, v[0], v[1])
		s := h2.str("\u03bb\u00e9x", 0, false)
		write("FuzzString", fmt.Sprintf("str-%d.%d", v[0], v[1]), h2.image(), uint8(i), uint32(s-fakeBase))
	}
	write("FuzzLineTable", "locations-long", uint8(Locations-1), []byte{0x80 | 14<<3, 0xc1, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1, 4)
	write("FuzzLineTable", "lt310-zero-runs", uint8(Linetable310-1), []byte{0, 127, 0, 127, 0, 0x80, 254, 1}, 1, 300)
	write("FuzzLineTable", "lnotab-odd", uint8(LnotabSigned-1), []byte{1, 2, 3}, -5, 3)
}
