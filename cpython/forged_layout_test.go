package cpython

import (
	"errors"
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
