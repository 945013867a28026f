package unwind

import (
	"debug/elf"
	"errors"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

func TestUnwindSynthetic(t *testing.T) {
	f, mod := synthModule(synthFDEA)
	hdr, err := FindEhFrameHdr(f, synthBase)
	if err != nil || hdr != synthBase+synthHdr {
		t.Fatalf("FindEhFrameHdr = %#x, %v; want %#x", hdr, err, synthBase+synthHdr)
	}
	mod.EhFrameHdr = hdr
	frames, err := New(f, AMD64, []Module{mod}).Unwind(synthStack(f), 0)
	if err != nil {
		t.Fatalf("Unwind: %v (frames %+v)", err, frames)
	}
	want := []Frame{
		{PC: synthBase + 0x1050, SP: 0x7000, Module: 0},
		{PC: synthBase + 0x1180, SP: 0x7020, Module: 0},
		{PC: 0x3000, SP: 0x7028, Module: -1},
		{PC: 0x3100, SP: 0x7110, Module: -1, FP: true},
	}
	if len(frames) != len(want) {
		t.Fatalf("frames %+v, want %+v", frames, want)
	}
	for i := range want {
		if frames[i] != want[i] {
			t.Errorf("frame %d: %+v, want %+v", i, frames[i], want[i])
		}
	}
	// Without the hdr, the first frame has no CFI: its frame pointer
	// (0x7010) leads to the saved rbp and A's return address.
	mod.EhFrameHdr = 0
	frames, _ = New(f, AMD64, []Module{mod}).Unwind(synthStack(f), 0)
	if len(frames) < 2 || frames[1].PC != synthBase+0x1180 || !frames[1].FP {
		t.Errorf("frame-pointer walk: %+v", frames)
	}
	// At most max frames, with an error saying so.
	mod.EhFrameHdr = hdr
	if frames, err := New(f, AMD64, []Module{mod}).Unwind(synthStack(f), 2); len(frames) != 2 || err == nil {
		t.Errorf("Unwind(max 2) = %d frames, %v", len(frames), err)
	}
}

// TestUnwindLoop: stacks that would make a walk loop end it with an
// error: a stack full of return addresses into B (each step moves up 8
// bytes, until the stack's end), and a frame-pointer chain pointing at
// itself.
func TestUnwindLoop(t *testing.T) {
	f, mod := synthModule(synthFDEA)
	mod.EhFrameHdr = synthBase + synthHdr
	stack := make([]byte, 0x200)
	for i := 0; i < len(stack); i += 8 {
		le.PutUint64(stack[i:], synthBase+0x1110)
	}
	f.Map(0x9000, stack)
	var r Regs
	r.set(7, 0x9000)
	r.set(16, synthBase+0x1100)
	frames, err := New(f, AMD64, []Module{mod}).Unwind(r, 0)
	if err == nil || len(frames) != 0x200/8+1 {
		t.Errorf("return addresses to the stack's end: %d frames, %v", len(frames), err)
	}
	// Code without CFI whose frame pointer points at itself.
	self := make([]byte, 16)
	le.PutUint64(self, 0xa000)
	le.PutUint64(self[8:], 0x3000)
	f.Map(0xa000, self)
	r = Regs{}
	r.set(7, 0x9ff0)
	r.set(6, 0xa000)
	r.set(16, 0x3000)
	frames, err = New(f, AMD64, []Module{mod}).Unwind(r, 0)
	if !errors.Is(err, ErrNoCFI) || len(frames) != 2 {
		t.Errorf("frame pointer loop: %+v, %v", frames, err)
	}
}

// TestEvalPLT: the CFA expression of amd64 PLT entries (rsp+8, plus 8
// past the 11th byte of each 16-byte entry).
func TestEvalPLT(t *testing.T) {
	expr := []byte{0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22}
	for _, c := range []struct{ rip, want uint64 }{{0x1005, 0x1008}, {0x100c, 0x1010}} {
		var r Regs
		r.set(7, 0x1000)
		r.set(16, c.rip)
		got, err := eval(expr, &r, func(uint64) (uint64, error) { return 0, memory.ErrFault }, nil)
		if err != nil || got != c.want {
			t.Errorf("rip %#x: %#x, %v; want %#x", c.rip, got, err, c.want)
		}
	}
	// Malformed expressions fail, never panic.
	for _, e := range [][]byte{{}, {0x22}, {0x06}, {0x28, 0xff}, {0x2f, 0x00, 0x80}, {0x1b}, {0x30, 0x30, 0x1b}} {
		var r Regs
		if _, err := eval(e, &r, func(uint64) (uint64, error) { return 0, memory.ErrFault }, nil); err == nil {
			t.Errorf("eval(%x) succeeded", e)
		}
	}
}

// loadELF maps the PT_LOAD segments of the ELF file at path into fake
// memory at base, as the dynamic loader would.
func loadELF(t *testing.T, path string, base uint64) (*memory.Fake, uint64) {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Skipf("%s: %v", path, err)
	}
	defer ef.Close()
	f := &memory.Fake{}
	var end uint64
	first := true
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if first && p.Off != 0 {
			t.Fatalf("%s: first PT_LOAD at offset %#x", path, p.Off)
		}
		first = false
		b := make([]byte, p.Memsz)
		if _, err := p.ReadAt(b[:p.Filesz], 0); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		f.Map(base+p.Vaddr, b)
		end = max(end, base+p.Vaddr+p.Memsz)
	}
	return f, end
}

// realLibraries lists this machine's libc and the pyenv builds'
// libpythons (some may be links to others).
func realLibraries() []string {
	var files []string
	for _, g := range []string{"/lib/*-linux-gnu/libc.so.6", "/usr/lib/*-linux-gnu/libc.so.6"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	if root := testenv.PyenvRoot(); root != "" {
		m, _ := filepath.Glob(filepath.Join(root, "versions", "*", "lib", "libpython*.so.1.0"))
		files = append(files, m...)
	}
	return files
}

// TestRealCFI parses every FDE of real libraries (libc, libpython) as
// loaded in memory: each is found by the search table at its start, its
// instructions run to its end without error, and at a function's entry
// the rules are the ABI's (CFA = sp+8 with the return address at cfa-8
// on amd64; CFA = sp on arm64) for all but a few (PLT, hand-written
// assembly).
func TestRealCFI(t *testing.T) {
	arch, sp, entryOff := AMD64, 7, int64(8)
	if runtime.GOARCH == "arm64" {
		arch, sp, entryOff = ARM64, 31, 0
	}
	files := realLibraries()
	if len(files) == 0 {
		testenv.Skipf(t, "no libc or libpython found")
	}
	seen := map[string]bool{}
	for _, path := range files {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			if seen[real] {
				continue
			}
			seen[real] = true
		}
		const base = 0x7f0000000000
		f, end := loadELF(t, path, base)
		hdr, err := FindEhFrameHdr(f, base)
		if err != nil || hdr == 0 {
			t.Errorf("%s: .eh_frame_hdr %#x, %v", path, hdr, err)
			continue
		}
		u := New(f, arch, []Module{{Start: base, End: end, Base: base, EhFrameHdr: hdr, Path: path}})
		h := u.hdr(0)
		if h.err != nil || h.count < 100 {
			t.Errorf("%s: %d FDEs, %v", path, h.count, h.err)
			continue
		}
		odd := 0
		for i := uint64(0); i < h.count; i++ {
			start, _, err := u.entry(h, i)
			if err != nil {
				t.Fatalf("%s: entry %d: %v", path, i, err)
			}
			fd, err := u.findFDE(start, 0)
			if err != nil {
				t.Errorf("%s: FDE at %#x: %v", path, start-base, err)
				continue
			}
			if fd.start != start {
				t.Errorf("%s: FDE for %#x starts at %#x", path, start-base, fd.start-base)
			}
			if _, err := rowAt(fd, fd.end-1); err != nil {
				t.Errorf("%s: FDE %#x-%#x: %v", path, fd.start-base, fd.end-base, err)
			}
			r, err := rowAt(fd, fd.start)
			if err != nil || r.cfaExpr != nil || r.cfaReg != sp || r.cfaOff != entryOff ||
				(arch == AMD64 && (r.regs[16].kind != ruleOffset || r.regs[16].off != -8)) {
				odd++
			}
		}
		// Cold parts of split functions (their FDE starts mid-function)
		// and hand-written assembly: about 2% of libc.
		if odd > int(h.count/20) {
			t.Errorf("%s: %d of %d functions do not start with the ABI's rules", path, odd, h.count)
		}
		t.Logf("%s: %d FDEs, %d with other rules at their entry", filepath.Base(path), h.count, odd)
	}
}

// TestFindEhFrameHdrHostile: a header that is not an ELF one, or program
// headers out of bounds, give an error.
func TestFindEhFrameHdrHostile(t *testing.T) {
	f := &memory.Fake{}
	f.Map(0x1000, make([]byte, 0x100))
	if _, err := FindEhFrameHdr(f, 0x1000); err == nil {
		t.Error("zero page accepted as an ELF header")
	}
	img := make([]byte, 0x100)
	copy(img, "\x7fELF\x02\x01\x01")
	le.PutUint64(img[0x20:], 0x40)
	le.PutUint16(img[0x36:], 56)
	le.PutUint16(img[0x38:], 0xffff)
	f2 := &memory.Fake{}
	f2.Map(0x1000, img)
	if _, err := FindEhFrameHdr(f2, 0x1000); err == nil {
		t.Error("65535 program headers accepted")
	}
	if _, err := FindEhFrameHdr(f2, 0x9000); !errors.Is(err, memory.ErrFault) {
		t.Errorf("unmapped header: %v", err)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }
