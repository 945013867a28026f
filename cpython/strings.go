package cpython

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// Bounds on strings read from a target. A length above the bound is a
// corrupted or forged object (or a wrong guess of its address).
const (
	// MaxNameLen bounds names: functions, qualified names, attributes,
	// dict keys (in characters).
	MaxNameLen = 4096
	// MaxSourceLen bounds file names and other long strings (in characters).
	MaxSourceLen = 1 << 20
)

// ErrNotString is returned when an object expected to be a string has
// another type.
var ErrNotString = errors.New("object is not a string")

// String reads the text of a Python string object at obj as UTF-8: a
// 3.x str (compact ASCII, compact UCS1/2/4 or legacy), or on 2.7 a str
// (its bytes, unchanged) or a unicode. Lone surrogates become U+FFFD.
// It fails with ErrNotString when obj is not a string, and with
// memory.ErrTooLarge when it holds more than max characters.
func String(r memory.Reader, l *layout.Layout, obj uint64, max int) (string, error) {
	d := newDecoder(r, l)
	return d.str(obj, max)
}

// str reads a str (3.x) or a str/unicode (2.7), checking its type.
func (d *decoder) str(obj uint64, max int) (string, error) {
	s, trunc, err := d.strTrunc(obj, max)
	if err == nil && trunc {
		err = fmt.Errorf("string at %#x longer than %d characters: %w", obj, max, memory.ErrTooLarge)
	}
	return s, err
}

// strTrunc reads at most max characters of a string object and reports
// whether it had more.
func (d *decoder) strTrunc(obj uint64, max int) (string, bool, error) {
	if obj == 0 {
		return "", false, fmt.Errorf("reading string: %w", memory.ErrNull)
	}
	t, err := d.typeOf(obj)
	if err != nil {
		return "", false, err
	}
	switch {
	case d.l.Major < 3 && t.flags&tpflagsBytesSubclass != 0:
		return d.bytesData(obj, max)
	case t.flags&tpflagsUnicodeSubclass != 0:
		if d.l.Major < 3 {
			return d.unicode27(obj, max)
		}
		return d.unicode3(obj, max)
	}
	return "", false, fmt.Errorf("object at %#x has type %q: %w", obj, t.name, ErrNotString)
}

// bytesData reads the bytes of a 2.7 str or 3.x bytes object.
func (d *decoder) bytesData(obj uint64, max int) (string, bool, error) {
	n, err := memory.I64(d.r, obj+uint64(d.l.VarObjectObSize))
	if err != nil {
		return "", false, fmt.Errorf("reading bytes length: %w", err)
	}
	if n < 0 || n > MaxSourceLen*4 {
		return "", false, fmt.Errorf("bytes length %d at %#x: %w", n, obj, memory.ErrTooLarge)
	}
	trunc := false
	if n > int64(max) {
		n, trunc = int64(max), true
	}
	off := d.l.BytesObSval
	if d.l.Major < 3 {
		off = d.l.StringObSval
	}
	b, err := d.readBytes(obj+uint64(off), int(n))
	if err != nil {
		return "", false, fmt.Errorf("reading bytes data: %w", err)
	}
	return string(b), trunc, nil
}

// unicode27 reads a 2.7 unicode object: a Py_UNICODE buffer of 2 or 4
// bytes a character.
func (d *decoder) unicode27(obj uint64, max int) (string, bool, error) {
	n, err := memory.I64(d.r, obj+uint64(d.l.UnicodeLength))
	if err != nil {
		return "", false, fmt.Errorf("reading unicode length: %w", err)
	}
	if n < 0 || n > MaxSourceLen*4 {
		return "", false, fmt.Errorf("unicode length %d at %#x: %w", n, obj, memory.ErrTooLarge)
	}
	trunc := false
	if n > int64(max) {
		n, trunc = int64(max), true
	}
	p, err := memory.Ptr(d.r, obj+uint64(d.l.UnicodeStr))
	if err != nil {
		return "", false, fmt.Errorf("reading unicode buffer: %w", err)
	}
	width := d.l.SizeofPyUNICODE
	if width != 2 && width != 4 {
		width = 4
	}
	b, err := d.readBytes(p, int(n)*width)
	if err != nil {
		return "", false, fmt.Errorf("reading unicode data: %w", err)
	}
	if width == 2 {
		return decodeUTF16(b), trunc, nil
	}
	return decodeKind(b, 4), trunc, nil
}

// PEP 393 state bits (Include/cpython/unicodeobject.h), the same from
// 3.3 to 3.14 in builds with the GIL.
const (
	stateKindShift = 2
	stateCompact   = 1 << 5
	stateASCII     = 1 << 6
)

// unicode3 reads a 3.x str object.
func (d *decoder) unicode3(obj uint64, max int) (string, bool, error) {
	l := d.l
	// One read covers length, hash and state of every version.
	if l.ASCIIObjectLength < 0 || l.ASCIIObjectState < l.ASCIIObjectLength+8 || l.ASCIIObjectState > l.ASCIIObjectLength+64 {
		return "", false, fmt.Errorf("str layout: state at %d, length at %d: %w", l.ASCIIObjectState, l.ASCIIObjectLength, layout.ErrBadLayout)
	}
	hdr := make([]byte, l.ASCIIObjectState+4-l.ASCIIObjectLength)
	if err := memory.Read(d.r, obj+uint64(l.ASCIIObjectLength), hdr); err != nil {
		return "", false, fmt.Errorf("reading str header: %w", err)
	}
	n := int64(memory.Order.Uint64(hdr))
	state := memory.Order.Uint32(hdr[l.ASCIIObjectState-l.ASCIIObjectLength:])
	if n < 0 || n > MaxSourceLen*4 {
		return "", false, fmt.Errorf("str length %d at %#x: %w", n, obj, memory.ErrTooLarge)
	}
	kind := int(state>>stateKindShift) & 7
	if kind != 1 && kind != 2 && kind != 4 {
		return "", false, fmt.Errorf("str at %#x has kind %d (not ready or corrupt): %w", obj, kind, ErrNotString)
	}
	var data uint64
	switch {
	case state&stateCompact != 0 && state&stateASCII != 0:
		data = obj + uint64(l.SizeofPyASCIIObject)
	case state&stateCompact != 0:
		data = obj + uint64(l.SizeofPyCompactUnicodeObject)
	default: // legacy string: PyUnicodeObject.data.any follows the compact part
		p, err := memory.Ptr(d.r, obj+uint64(l.SizeofPyCompactUnicodeObject))
		if err != nil {
			return "", false, fmt.Errorf("reading legacy str buffer: %w", err)
		}
		data = p
	}
	trunc := false
	if n > int64(max) {
		n, trunc = int64(max), true
	}
	size := int(n) * kind
	b, err := d.readBytes(data, size)
	if err != nil {
		return "", false, fmt.Errorf("reading str data: %w", err)
	}
	if state&stateASCII != 0 {
		return string(b), trunc, nil
	}
	return decodeKind(b, kind), trunc, nil
}

// decodeKind turns PEP 393 data (kind 1, 2 or 4 bytes a code point) or a
// UCS4 buffer into UTF-8. Surrogates and invalid code points become
// U+FFFD.
func decodeKind(b []byte, kind int) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i+kind <= len(b); i += kind {
		var c rune
		switch kind {
		case 1:
			c = rune(b[i])
		case 2:
			c = rune(memory.Order.Uint16(b[i:]))
		default:
			c = rune(memory.Order.Uint32(b[i:]))
		}
		if !utf8.ValidRune(c) {
			c = utf8.RuneError
		}
		sb.WriteRune(c)
	}
	return sb.String()
}

// decodeUTF16 decodes a UCS2/UTF-16 buffer (2.7 narrow builds).
func decodeUTF16(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = memory.Order.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
