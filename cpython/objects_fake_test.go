package cpython

import (
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// fakeHeap builds CPython objects of one version in a memory.Fake, for
// decoder unit tests. Every object gets its own region, with a gap after
// it so that overreads fault.
type fakeHeap struct {
	t       testing.TB
	m       *memory.Fake
	regions []fakeRegion
	l       *layout.Layout
	next    uint64
	types   map[string]uint64
}

var fakeVersions = [][2]int{{2, 7}, {3, 6}, {3, 8}, {3, 10}, {3, 11}, {3, 12}, {3, 13}, {3, 14}, {3, 15}}

func newFakeHeap(t testing.TB, major, minor int) *fakeHeap {
	t.Helper()
	l, err := layout.For(major, minor)
	if err != nil {
		t.Skipf("no layout for %d.%d: %v", major, minor, err)
	}
	return &fakeHeap{t: t, m: &memory.Fake{}, l: l, next: fakeBase, types: map[string]uint64{}}
}

type fakeRegion struct {
	addr uint64
	data []byte
}

// alloc maps a zeroed region of n bytes and returns its address and bytes.
func (h *fakeHeap) alloc(n int) (uint64, []byte) {
	addr := h.next
	b := make([]byte, n)
	h.m.Map(addr, b)
	h.regions = append(h.regions, fakeRegion{addr, b})
	h.next += (uint64(n) + 0x2f) &^ 0xf
	return addr, b
}

func put64(b []byte, off int, v uint64) { memory.Order.PutUint64(b[off:], v) }
func put32(b []byte, off int, v uint32) { memory.Order.PutUint32(b[off:], v) }

// typ returns a type object named name with tp_flags flags.
func (h *fakeHeap) typ(name string, flags uint64) uint64 {
	if a, ok := h.types[name]; ok {
		return a
	}
	na, nb := h.alloc(len(name) + 128) // CString reads 64-byte chunks
	copy(nb, name)
	a, b := h.alloc(512)
	put64(b, h.l.TypeTpName, na)
	put64(b, h.l.TypeTpFlags, flags)
	h.types[name] = a
	return a
}

// object allocates an object of type tp with size bytes.
func (h *fakeHeap) object(tp uint64, size int) (uint64, []byte) {
	a, b := h.alloc(size)
	put64(b, h.l.ObjectObRefcnt, 1)
	put64(b, h.l.ObjectObType, tp)
	return a, b
}

// str builds a str (3.x) or a unicode (2.7) holding s. kind forces the
// PEP 393 kind (0: the smallest); legacy builds a non-compact string.
func (h *fakeHeap) str(s string, kind int, legacy bool) uint64 {
	l := h.l
	runes := []rune(s)
	if l.Major < 3 {
		tp := h.typ("unicode", tpflagsUnicodeSubclass)
		w := l.SizeofPyUNICODE
		var data []byte
		for _, r := range runes {
			if w == 2 {
				if r >= 0x10000 {
					r -= 0x10000
					data = memory.Order.AppendUint16(data, uint16(0xd800+(r>>10)))
					data = memory.Order.AppendUint16(data, uint16(0xdc00+(r&0x3ff)))
					continue
				}
				data = memory.Order.AppendUint16(data, uint16(r))
			} else {
				data = memory.Order.AppendUint32(data, uint32(r))
			}
		}
		da, db := h.alloc(len(data))
		copy(db, data)
		a, b := h.object(tp, 64)
		put64(b, l.UnicodeLength, uint64(len(data)/w))
		put64(b, l.UnicodeStr, da)
		return a
	}
	maxc := rune(0)
	for _, r := range runes {
		maxc = max(maxc, r)
	}
	if kind == 0 {
		switch {
		case maxc < 0x100:
			kind = 1
		case maxc < 0x10000:
			kind = 2
		default:
			kind = 4
		}
	}
	ascii := maxc < 0x80 && kind == 1 && !legacy
	var data []byte
	for _, r := range runes {
		switch kind {
		case 1:
			data = append(data, byte(r))
		case 2:
			data = memory.Order.AppendUint16(data, uint16(r))
		default:
			data = memory.Order.AppendUint32(data, uint32(r))
		}
	}
	state := uint32(kind)<<stateKindShift | 1<<7 // ready (≤3.11; ignored after)
	hdr := l.SizeofPyCompactUnicodeObject
	switch {
	case legacy:
		hdr += 8
	case ascii:
		state |= stateCompact | stateASCII
		hdr = l.SizeofPyASCIIObject
	default:
		state |= stateCompact
	}
	tp := h.typ("str", tpflagsUnicodeSubclass)
	a, b := h.object(tp, hdr+len(data)+4)
	put64(b, l.ASCIIObjectLength, uint64(len(runes)))
	put32(b, l.ASCIIObjectState, state)
	if legacy {
		da, db := h.alloc(len(data) + 4)
		copy(db, data)
		put64(b, l.SizeofPyCompactUnicodeObject, da)
	} else {
		copy(b[hdr:], data)
	}
	return a
}

// bytesObj builds a bytes (3.x) or str (2.7) object.
func (h *fakeHeap) bytesObj(s string) uint64 {
	l := h.l
	name, off := "bytes", l.BytesObSval
	if l.Major < 3 {
		name, off = "str", l.StringObSval
	}
	a, b := h.object(h.typ(name, tpflagsBytesSubclass), off+len(s)+1)
	put64(b, l.VarObjectObSize, uint64(len(s)))
	copy(b[off:], s)
	return a
}

// intObj builds an int (a long on 3.x and for 2.7 when long is set) from
// 30-bit digits, least significant first.
func (h *fakeHeap) intObj(digits []uint32, negative, long bool) uint64 {
	l := h.l
	if l.Major < 3 && !long {
		a, b := h.object(h.typ("int", tpflagsIntSubclass), 32)
		v := int64(digits[0])
		if negative {
			v = -v
		}
		put64(b, l.IntObIval, uint64(v))
		return a
	}
	name := "int"
	if l.Major < 3 {
		name = "long"
	}
	a, b := h.object(h.typ(name, tpflagsLongSubclass), l.LongObDigit+4*len(digits)+4)
	if l.LongLvTag >= 0 {
		sign := uint64(0)
		switch {
		case len(digits) == 0:
			sign = 1
		case negative:
			sign = 2
		}
		put64(b, l.LongLvTag, uint64(len(digits))<<3|sign)
	} else {
		n := int64(len(digits))
		if negative {
			n = -n
		}
		put64(b, l.VarObjectObSize, uint64(n))
	}
	for i, d := range digits {
		put32(b, l.LongObDigit+4*i, d)
	}
	return a
}

func TestStringFake(t *testing.T) {
	for _, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) {
			cases := []struct {
				s      string
				kind   int
				legacy bool
			}{
				{"hello", 0, false},
				{"h\u00e9llo", 0, false},
				{"\u03bb-ok", 0, false},
				{"a\U0001f600", 0, false},
				{"wide ascii", 4, false},
				{"", 0, false},
			}
			if h.l.Major == 3 && h.l.Minor <= 11 {
				cases = append(cases, struct {
					s      string
					kind   int
					legacy bool
				}{"legacy \u03bb", 0, true})
			}
			for _, c := range cases {
				a := h.str(c.s, c.kind, c.legacy)
				got, err := String(h.m, h.l, a, MaxNameLen)
				if err != nil || got != c.s {
					t.Errorf("String(%q kind %d legacy %v) = %q, %v", c.s, c.kind, c.legacy, got, err)
				}
			}
			long := h.str(string(make([]byte, 50)), 0, false)
			if _, err := String(h.m, h.l, long, 10); !isErr(err, memory.ErrTooLarge) {
				t.Errorf("over-long string: err %v, want ErrTooLarge", err)
			}
			if _, err := String(h.m, h.l, 0, 10); !isErr(err, memory.ErrNull) {
				t.Errorf("NULL string: err %v, want ErrNull", err)
			}
			i := h.intObj([]uint32{5}, false, false)
			if _, err := String(h.m, h.l, i, 10); !isErr(err, ErrNotString) {
				t.Errorf("int as string: err %v, want ErrNotString", err)
			}
			if h.l.Major < 3 {
				b := h.bytesObj("raw\xff")
				if got, err := String(h.m, h.l, b, 10); err != nil || got != "raw\xff" {
					t.Errorf("2.7 str = %q, %v", got, err)
				}
			}
		})
	}
}

func TestStringLoneSurrogate(t *testing.T) {
	h := newFakeHeap(t, 3, 12)
	tp := h.typ("str", tpflagsUnicodeSubclass)
	a, b := h.object(tp, 64)
	put64(b, h.l.ASCIIObjectLength, 2)
	put32(b, h.l.ASCIIObjectState, 2<<stateKindShift|stateCompact)
	memory.Order.PutUint16(b[h.l.SizeofPyCompactUnicodeObject:], 0xdc80)
	memory.Order.PutUint16(b[h.l.SizeofPyCompactUnicodeObject+2:], 'x')
	got, err := String(h.m, h.l, a, 10)
	if err != nil || got != "\ufffdx" || !utf8.ValidString(got) {
		t.Errorf("lone surrogate: %q, %v", got, err)
	}
}

func TestUnicode27Narrow(t *testing.T) {
	h := newFakeHeap(t, 2, 7)
	h.l.SizeofPyUNICODE = 2
	a := h.str("a\U0001f600\u00e9", 0, false)
	if got, err := String(h.m, h.l, a, 10); err != nil || got != "a\U0001f600\u00e9" {
		t.Errorf("UCS2 unicode = %q, %v", got, err)
	}
}

func TestIntAndReprFake(t *testing.T) {
	for _, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) {
			big := h.intObj([]uint32{1, 1}, true, true) // -(1 + 2^30)
			want := "-1073741825"
			if h.l.Major < 3 {
				want += "L"
			}
			if got, err := Repr(h.m, h.l, big); err != nil || got != want {
				t.Errorf("Repr(big) = %q, %v; want %q", got, err, want)
			}
			small := h.intObj([]uint32{7}, true, false)
			if got, err := Repr(h.m, h.l, small); err != nil || got != "-7" {
				t.Errorf("Repr(-7) = %q, %v", got, err)
			}
			if h.l.Major >= 3 {
				zero := h.intObj(nil, false, false)
				if got, err := Repr(h.m, h.l, zero); err != nil || got != "0" {
					t.Errorf("Repr(0) = %q, %v", got, err)
				}
			}
			s := h.str("it's", 0, false)
			want = `"it's"`
			if h.l.Major < 3 {
				want = `u"it's"`
			}
			if got, err := Repr(h.m, h.l, s); err != nil || got != want {
				t.Errorf("Repr(str) = %q, %v; want %q", got, err, want)
			}
			b := h.bytesObj("a\x00'\"")
			want = `b'a\x00\'"'`
			if h.l.Major < 3 {
				want = want[1:]
			}
			if got, err := Repr(h.m, h.l, b); err != nil || got != want {
				t.Errorf("Repr(bytes) = %q, %v; want %q", got, err, want)
			}
			o, _ := h.object(h.typ("mod.Thing", 0), 32)
			if got, err := Repr(h.m, h.l, o); err != nil || got != fmt.Sprintf("<Thing object at %#x>", o) {
				t.Errorf("Repr(object) = %q, %v", got, err)
			}
		})
	}
}

func isErr(err, target error) bool { return errors.Is(err, target) }

func TestFloatReprFixed(t *testing.T) {
	for v, want := range map[float64]string{
		0.1: "0.1", 1e22: "1e+22", 1e16: "1e+16", 1e15: "1000000000000000.0",
		-1.5e-7: "-1.5e-07", 0.0001: "0.0001", 0.00001: "1e-05", 123456789.0: "123456789.0",
		0: "0.0", 2.5: "2.5", 1.7976931348623157e308: "1.7976931348623157e+308",
	} {
		if got := FloatRepr(v); got != want {
			t.Errorf("FloatRepr(%v) = %q, want %q", v, got, want)
		}
	}
}
