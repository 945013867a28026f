package cpython

import (
	"errors"
	"fmt"
	"math"
	"math/big"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// Type flags (Include/object.h), identical from 2.7 to 3.14.
const (
	tpflagsInlineValues    = 1 << 2  // 3.13+
	tpflagsManagedDict     = 1 << 4  // 3.11+
	tpflagsIntSubclass     = 1 << 23 // 2.7 int
	tpflagsLongSubclass    = 1 << 24
	tpflagsListSubclass    = 1 << 25
	tpflagsTupleSubclass   = 1 << 26
	tpflagsBytesSubclass   = 1 << 27 // 2.7 str, 3.x bytes
	tpflagsUnicodeSubclass = 1 << 28
	tpflagsDictSubclass    = 1 << 29
)

// Bounds on containers read from a target.
const (
	// maxDictEntries bounds the entry table of a dict scanned by DictGet.
	maxDictEntries = 1 << 20
	// maxLongDigits bounds the digits of an int decoded by Int.
	maxLongDigits = 1 << 12
	// maxTypeName bounds tp_name.
	maxTypeName = 256
)

var (
	// ErrKeyNotFound is returned by DictGet and AttrGet when the key is
	// absent.
	ErrKeyNotFound = errors.New("key not found")
	// ErrWrongType is returned when an object does not have the type an
	// operation needs (a dict for DictGet, an int for Int...).
	ErrWrongType = errors.New("object has the wrong type")
)

// typeInfo is what the decoder caches about one type object.
type typeInfo struct {
	addr  uint64
	name  string
	flags uint64
}

// decoder reads objects of one address space with one layout; it caches
// type objects (and code objects, see code.go) for the duration of one
// operation, so that a deep stack costs few reads.
type decoder struct {
	r     memory.Reader
	l     *layout.Layout
	types map[uint64]*typeInfo
	codes map[uint64]*codeInfo
	shim  bool                // the last frame decoded was an entry shim (3.12+)
	hdr   []byte              // frameHeader's scratch buffer
	buf   []byte              // scratchBytes's
	mros  map[uint64][]uint64 // instanceOf's: each type's tp_mro
	// front, when set (a Sampler's), is a direct-mapped cache in front
	// of codes: a sampled stack looks its code objects up at every
	// sample.
	front *[codeFrontSize]codeSlot
	// codeR, when set, is the reader a frame walk decodes new code
	// objects through (see Sampler.SetCodeReader).
	codeR memory.Reader
}

// codeFrontSize is the number of slots of decoder.front.
const codeFrontSize = 256

type codeSlot struct {
	addr uint64
	c    *codeInfo
}

// cachedCode returns the decoded code object at addr, if it is cached.
func (d *decoder) cachedCode(addr uint64) (*codeInfo, bool) {
	if d.front == nil {
		c, ok := d.codes[addr]
		return c, ok
	}
	slot := &d.front[(addr>>4)%codeFrontSize]
	if slot.addr == addr && slot.c != nil {
		return slot.c, true
	}
	c, ok := d.codes[addr]
	if ok {
		*slot = codeSlot{addr, c}
	}
	return c, ok
}

func newDecoder(r memory.Reader, l *layout.Layout) *decoder {
	return &decoder{r: r, l: l, types: map[uint64]*typeInfo{}, codes: map[uint64]*codeInfo{}}
}

// maxCachedTypes bounds the type cache (garbage pointers could fill it).
const maxCachedTypes = 4096

// typeOf reads the type of obj.
func (d *decoder) typeOf(obj uint64) (*typeInfo, error) {
	if obj == 0 {
		return nil, fmt.Errorf("reading type: %w", memory.ErrNull)
	}
	tp, err := memory.NonNullPtr(d.r, obj+uint64(d.l.ObjectObType))
	if err != nil {
		return nil, fmt.Errorf("reading type of %#x: %w", obj, err)
	}
	return d.typeAt(tp)
}

// typeAt reads the type object at tp.
func (d *decoder) typeAt(tp uint64) (*typeInfo, error) {
	if t, ok := d.types[tp]; ok {
		return t, nil
	}
	namePtr, err := memory.NonNullPtr(d.r, tp+uint64(d.l.TypeTpName))
	if err != nil {
		return nil, fmt.Errorf("reading tp_name of type %#x: %w", tp, err)
	}
	name, err := memory.CString(d.r, namePtr, maxTypeName)
	if err != nil {
		return nil, fmt.Errorf("reading tp_name of type %#x: %w", tp, err)
	}
	if !memory.ValidUTF8(name) {
		return nil, fmt.Errorf("type %#x has a garbled name: %w", tp, ErrWrongType)
	}
	flags, err := memory.U64(d.r, tp+uint64(d.l.TypeTpFlags))
	if err != nil {
		return nil, fmt.Errorf("reading tp_flags of type %#x: %w", tp, err)
	}
	t := &typeInfo{addr: tp, name: name, flags: flags}
	if len(d.types) < maxCachedTypes {
		d.types[tp] = t
	}
	return t, nil
}

// TypeName returns the tp_name of obj's type: "int", "dict", "Thread",
// "collections.OrderedDict" (static types of extension modules carry
// their module in tp_name).
func TypeName(r memory.Reader, l *layout.Layout, obj uint64) (string, error) {
	t, err := newDecoder(r, l).typeOf(obj)
	if err != nil {
		return "", err
	}
	return t.name, nil
}

// Int reads a Python int (3.x int; 2.7 int or long; bool too) at obj.
// It fails with ErrWrongType for other objects and memory.ErrTooLarge
// for ints of more than about 49000 decimal digits.
func Int(r memory.Reader, l *layout.Layout, obj uint64) (*big.Int, error) {
	d := newDecoder(r, l)
	t, err := d.typeOf(obj)
	if err != nil {
		return nil, err
	}
	return d.intValue(obj, t)
}

func (d *decoder) intValue(obj uint64, t *typeInfo) (*big.Int, error) {
	l := d.l
	switch {
	case l.Major < 3 && t.flags&tpflagsIntSubclass != 0 || l.Major < 3 && t.name == "bool":
		v, err := memory.I64(d.r, obj+uint64(l.IntObIval))
		if err != nil {
			return nil, fmt.Errorf("reading int value: %w", err)
		}
		return big.NewInt(v), nil
	case t.flags&tpflagsLongSubclass != 0:
	default:
		return nil, fmt.Errorf("object at %#x has type %q, not int: %w", obj, t.name, ErrWrongType)
	}
	var ndigits int64
	negative := false
	if l.LongLvTag >= 0 {
		tag, err := memory.U64(d.r, obj+uint64(l.LongLvTag))
		if err != nil {
			return nil, fmt.Errorf("reading int tag: %w", err)
		}
		ndigits = int64(tag >> 3)
		switch tag & 3 {
		case 1:
			return new(big.Int), nil
		case 2:
			negative = true
		}
	} else {
		n, err := memory.I64(d.r, obj+uint64(l.VarObjectObSize))
		if err != nil {
			return nil, fmt.Errorf("reading int size: %w", err)
		}
		if n < 0 {
			negative, n = true, -n
		}
		ndigits = n
	}
	if ndigits < 0 || ndigits > maxLongDigits {
		return nil, fmt.Errorf("int with %d digits at %#x: %w", ndigits, obj, memory.ErrTooLarge)
	}
	width, shift := 4, uint(30)
	if l.SizeofDigit == 2 {
		width, shift = 2, 15
	}
	b, err := d.readBytes(obj+uint64(l.LongObDigit), int(ndigits)*width)
	if err != nil {
		return nil, fmt.Errorf("reading int digits: %w", err)
	}
	v := new(big.Int)
	for i := int(ndigits) - 1; i >= 0; i-- {
		var dg uint64
		if width == 4 {
			dg = uint64(memory.Order.Uint32(b[4*i:]))
		} else {
			dg = uint64(memory.Order.Uint16(b[2*i:]))
		}
		v.Lsh(v, shift)
		v.Or(v, new(big.Int).SetUint64(dg))
	}
	if negative {
		v.Neg(v)
	}
	return v, nil
}

// Float reads a Python float at obj.
func Float(r memory.Reader, l *layout.Layout, obj uint64) (float64, error) {
	d := newDecoder(r, l)
	t, err := d.typeOf(obj)
	if err != nil {
		return 0, err
	}
	if t.name != "float" {
		return 0, fmt.Errorf("object at %#x has type %q, not float: %w", obj, t.name, ErrWrongType)
	}
	return d.floatValue(obj)
}

func (d *decoder) floatValue(obj uint64) (float64, error) {
	v, err := memory.U64(d.r, obj+uint64(d.l.FloatObFval))
	if err != nil {
		return 0, fmt.Errorf("reading float value: %w", err)
	}
	return math.Float64frombits(v), nil
}

// Len returns the number of items of a tuple, list, dict, set, str or
// bytes object (what len() would say). It fails with ErrWrongType for
// other objects.
func Len(r memory.Reader, l *layout.Layout, obj uint64) (int, error) {
	d := newDecoder(r, l)
	t, err := d.typeOf(obj)
	if err != nil {
		return 0, err
	}
	n, ok, err := d.length(obj, t)
	if err == nil && !ok {
		err = fmt.Errorf("object at %#x has type %q, which has no length: %w", obj, t.name, ErrWrongType)
	}
	return n, err
}

// length returns len(obj) for the container and string types it knows;
// ok is false for other types.
func (d *decoder) length(obj uint64, t *typeInfo) (n int, ok bool, err error) {
	l := d.l
	var off int
	switch {
	case t.flags&(tpflagsTupleSubclass|tpflagsListSubclass|tpflagsBytesSubclass) != 0:
		off = l.VarObjectObSize
	case t.flags&tpflagsDictSubclass != 0:
		off = l.DictMaUsed
	case t.flags&tpflagsUnicodeSubclass != 0:
		off = l.ASCIIObjectLength
		if l.Major < 3 {
			off = l.UnicodeLength
		}
	case t.name == "set" || t.name == "frozenset":
		// PySetObject: PyObject_HEAD, fill, used (Include/setobject.h).
		off = l.SizeofPyObject + 8
	default:
		return 0, false, nil
	}
	v, err := memory.I64(d.r, obj+uint64(off))
	if err != nil {
		return 0, true, fmt.Errorf("reading length of %s: %w", t.name, err)
	}
	if v < 0 || v > math.MaxInt32 {
		return 0, true, fmt.Errorf("length %d of %s at %#x: %w", v, t.name, obj, memory.ErrTooLarge)
	}
	return int(v), true, nil
}

// TupleItems returns the item pointers of a tuple, at most max of them.
func TupleItems(r memory.Reader, l *layout.Layout, tuple uint64, max int) ([]uint64, error) {
	return newDecoder(r, l).tupleItems(tuple, max)
}

func (d *decoder) tupleItems(tuple uint64, max int) ([]uint64, error) {
	n, err := memory.I64(d.r, tuple+uint64(d.l.VarObjectObSize))
	if err != nil {
		return nil, fmt.Errorf("reading tuple size: %w", err)
	}
	if n < 0 || n > int64(max) {
		return nil, fmt.Errorf("tuple of %d items at %#x (limit %d): %w", n, tuple, max, memory.ErrTooLarge)
	}
	return d.ptrArray(tuple+uint64(d.l.TupleObItem), int(n))
}

// ptrArray reads n pointers at addr.
func (d *decoder) ptrArray(addr uint64, n int) ([]uint64, error) {
	b, err := d.scratchBytes(addr, n*8)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = memory.Order.Uint64(b[8*i:])
	}
	return out, nil
}

// scratchBytes is readBytes into the decoder's scratch buffer, valid
// until its next call (readBytes past readChunk).
func (d *decoder) scratchBytes(addr uint64, n int) ([]byte, error) {
	if n < 0 || n > readChunk {
		return d.readBytes(addr, n)
	}
	if cap(d.buf) < n {
		d.buf = make([]byte, max(n, 256))
	}
	b := d.buf[:n]
	if err := memory.Read(d.r, addr, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readChunk is the size of one read by readBytes.
const readChunk = 64 << 10

// readBytes reads n bytes at addr (n already bounded by the caller). A
// large n is read in chunks, so a forged length over unmapped memory
// fails at the first chunk instead of allocating the whole length first.
func (d *decoder) readBytes(addr uint64, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("reading %d bytes at %#x: %w", n, addr, memory.ErrTooLarge)
	}
	if n <= readChunk {
		return memory.Bytes(d.r, addr, n, n)
	}
	out := make([]byte, 0, readChunk)
	for len(out) < n {
		c := n - len(out)
		if c > readChunk {
			c = readChunk
		}
		b, err := memory.Bytes(d.r, addr+uint64(len(out)), c, c)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}
