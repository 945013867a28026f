package cpython

import (
	"errors"
	"sort"
	"testing"

	"github.com/pyglass/pyglass/cpython/layout"
)

// TestForgedLayout: a layout whose offsets do not fit the structures
// they describe (as a forged _Py_DebugOffsets would give) makes the
// decoders fail with layout.ErrBadLayout, never panic: code objects,
// their local names, strings and dict entries.
func TestForgedLayout(t *testing.T) {
	for _, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		code := h.fakeCode("f", "f", "/f.py", 10, 8, []string{"x"})
		s := h.str("hello", 0, false)
		dict := h.dictObj(map[string]uint64{"k": s})
		good := *h.l
		forge := func(name string, edit func(l *layout.Layout), check func(l *layout.Layout) error) {
			t.Helper()
			l := good
			edit(&l)
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%d.%d %s: panic: %v", v[0], v[1], name, p)
					}
				}()
				err = check(&l)
			}()
			if !errors.Is(err, layout.ErrBadLayout) {
				t.Errorf("%d.%d %s: %v, want ErrBadLayout", v[0], v[1], name, err)
			}
		}
		readCode := func(l *layout.Layout) error {
			_, err := ReadCode(h.m, l, code)
			return err
		}
		forge("code_object.size 32, firstlineno 4000", func(l *layout.Layout) {
			l.SizeofPyCodeObject, l.CodeCoFirstlineno = 32, 4000
		}, readCode)
		forge("co_name past the end", func(l *layout.Layout) { l.CodeCoName = l.SizeofPyCodeObject - 4 }, readCode)
		forge("local names past the end", func(l *layout.Layout) {
			if l.CodeCoLocalsplusnames >= 0 {
				l.CodeCoLocalspluskinds = l.SizeofPyCodeObject
			} else {
				l.CodeCoNlocals = l.SizeofPyCodeObject
			}
		}, func(l *layout.Layout) error {
			d := newDecoder(h.m, l)
			c, err := d.code(code)
			if err != nil {
				return err
			}
			return d.localNames(c)
		})
		if v[0] == 3 {
			forge("str state before length", func(l *layout.Layout) { l.ASCIIObjectState = l.ASCIIObjectLength - 8 }, func(l *layout.Layout) error {
				_, err := String(h.m, l, s, MaxNameLen)
				return err
			})
		}
		forge("dict entries too small", func(l *layout.Layout) {
			l.SizeofPyDictEntry, l.SizeofPyDictKeyEntry, l.SizeofPyDictUnicodeEntry = 0, 0, 0
		}, func(l *layout.Layout) error {
			_, err := DictGet(h.m, l, dict, "k")
			return err
		})
		// The sound layout reads them all.
		if _, err := ReadCode(h.m, &good, code); err != nil {
			t.Errorf("%d.%d: sound layout: %v", v[0], v[1], err)
		}
		if got, err := DictGet(h.m, &good, dict, "k"); err != nil || got != s {
			t.Errorf("%d.%d: sound layout: dict lookup %#x, %v", v[0], v[1], got, err)
		}
	}
}

// dictObj builds a dict (combined table, general keys) holding items.
func (h *fakeHeap) dictObj(items map[string]uint64) uint64 {
	l := h.l
	a, b := h.object(h.typ("dict", tpflagsDictSubclass), 64)
	put64(b, l.DictMaUsed, uint64(len(items)))
	if l.Major < 3 {
		ta, tb := h.alloc(8 * l.SizeofPyDictEntry)
		i := 0
		for k, v := range items {
			put64(tb, i*l.SizeofPyDictEntry+8, h.str(k, 0, false))
			put64(tb, i*l.SizeofPyDictEntry+16, v)
			i++
		}
		put64(b, l.DictMaFill, uint64(len(items)))
		put64(b, l.DictMaMask, 7)
		put64(b, l.DictMaTable, ta)
		return a
	}
	ka, kb := h.alloc(l.DictKeysDkIndices + 8 + 8*l.SizeofPyDictKeyEntry)
	if l.DictKeysDkLog2Size >= 0 {
		kb[l.DictKeysDkLog2Size], kb[l.DictKeysDkLog2IndexBytes], kb[l.DictKeysDkKind] = 3, 3, 0
	} else {
		put64(kb, l.DictKeysDkSize, 8)
	}
	put64(kb, l.DictKeysDkNentries, uint64(len(items)))
	i := 0
	for k, v := range items {
		e := l.DictKeysDkIndices + 8 + i*l.SizeofPyDictKeyEntry
		put64(kb, e+8, h.str(k, 0, false))
		put64(kb, e+16, v)
		i++
	}
	put64(b, l.DictMaKeys, ka)
	return a
}

// editLayout applies edits to a copy of l: each 3 bytes set field
// edits[0] (an index into the layout's fields, sorted) to the
// little-endian uint16 edits[1:3], as -1 when it is 0xffff.
func editLayout(l *layout.Layout, edits []byte) *layout.Layout {
	f := l.Fields()
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	for i := 0; i+3 <= len(edits); i += 3 {
		v := int(edits[i+1]) | int(edits[i+2])<<8
		if v == 0xffff {
			v = -1
		}
		f[names[int(edits[i])%len(names)]] = v
	}
	out := *l
	if err := out.Set(f); err != nil {
		panic(err)
	}
	return &out
}

// FuzzLayoutFrames walks a fake stack (or a corruption of it) with a
// layout of which some fields were changed, kept when it passes
// Validate: a layout that validates must never make a decoder panic,
// whatever the memory holds.
func FuzzLayoutFrames(f *testing.F) {
	for i, v := range fakeVersions {
		h := newFakeHeap(f, v[0], v[1])
		top := h.fakeStack()
		f.Add(h.image(), uint8(i), uint32(top-fakeBase), []byte{})
		f.Add(h.image(), uint8(i), uint32(top-fakeBase), []byte{7, 200, 0, 30, 16, 0})
	}
	f.Fuzz(func(t *testing.T, img []byte, ver uint8, top uint32, edits []byte) {
		if len(img) > 1<<20 || len(edits) > 60 {
			return
		}
		h := fuzzHeap(t, ver, img)
		l := editLayout(h.l, edits)
		if l.Validate() != nil {
			return
		}
		addr := fakeBase + uint64(top)
		Frames(h.m, l, addr, FrameOptions{Locals: true, MaxDepth: 64})
		Repr(h.m, l, addr)
		String(h.m, l, addr, MaxNameLen)
		DictItems(h.m, l, addr, 64)
		AttrGet(h.m, l, addr, "x")
		ReadCode(h.m, l, addr)
		Int(h.m, l, addr)
	})
}
