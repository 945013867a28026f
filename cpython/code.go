package cpython

import (
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// maxLineTable bounds a line table (bytes).
const maxLineTable = 4 << 20

// maxLocals bounds the number of local variable names of a code object.
const maxLocals = 1 << 16

// Code is what pyglass reads from a code object.
type Code struct {
	// Name is co_name; QualName is co_qualname (3.11+, else Name).
	Name, QualName string
	// File is co_filename.
	File string
	// FirstLine is co_firstlineno.
	FirstLine int
	// LineTable is co_lnotab (≤3.9) or co_linetable (3.10+), in Format.
	LineTable []byte
	// Format is the encoding of LineTable.
	Format LineFormat
	// Bytecode is the address of the first code unit (3.11+: the inline
	// co_code_adaptive), 0 before 3.11.
	Bytecode uint64
}

// Line returns the line of the instruction at byte offset addr.
func (c *Code) Line(addr int) int {
	return AddrToLine(c.Format, c.LineTable, c.FirstLine, addr)
}

// codeInfo caches a decoded code object and, lazily, its local names
// and the lines of the offsets asked for.
type codeInfo struct {
	Code
	lastOff    int // the offset of the last line asked for, +1 (0: none)
	lastLine   int
	lines      map[int]int
	hdr        []byte   // the PyCodeObject header as read
	localNames []string // nil until read
	localKinds []byte   // 3.11+
	nlocals    int      // ≤3.10: co_nlocals
}

// maxCachedLines bounds the lines cached per code object.
const maxCachedLines = 256

// line returns the line of the instruction at byte offset off, decoding
// the line table once per offset.
func (c *codeInfo) line(off int) int {
	if c.lastOff == off+1 {
		return c.lastLine // a function sampled at the same instruction
	}
	if l, ok := c.lines[off]; ok {
		c.lastOff, c.lastLine = off+1, l
		return l
	}
	l := c.Line(off)
	if c.lines == nil {
		c.lines = map[int]int{}
	}
	if len(c.lines) < maxCachedLines {
		c.lines[off] = l
	}
	c.lastOff, c.lastLine = off+1, l
	return l
}

// ReadCode decodes the code object at addr. It fails with ErrWrongType
// when the object is not a code object.
func ReadCode(r memory.Reader, l *layout.Layout, addr uint64) (*Code, error) {
	c, err := newDecoder(r, l).code(addr)
	if err != nil {
		return nil, err
	}
	return &c.Code, nil
}

// maxCachedCodes bounds the code cache of one decoder.
const maxCachedCodes = 4096

// code reads (or returns the cached) code object at addr.
func (d *decoder) code(addr uint64) (*codeInfo, error) {
	if c, ok := d.cachedCode(addr); ok {
		return c, nil
	}
	r := d.r
	if d.codeR != nil {
		d.r = d.codeR
	}
	c, err := d.readCode(addr)
	d.r = r
	if err != nil {
		return nil, fmt.Errorf("reading code object at %#x: %w", addr, err)
	}
	if len(d.codes) < maxCachedCodes {
		d.codes[addr] = c
	}
	return c, nil
}

func (d *decoder) isCode(t *typeInfo) bool { return t.name == "code" }

func (d *decoder) readCode(addr uint64) (*codeInfo, error) {
	l := d.l
	if addr == 0 {
		return nil, memory.ErrNull
	}
	size := l.SizeofPyCodeObject
	if size <= 0 || size > 4096 {
		return nil, fmt.Errorf("layout has sizeof(PyCodeObject) = %d", size)
	}
	hdr, err := memory.Bytes(d.r, addr, size, size)
	if err != nil {
		return nil, err
	}
	f := &fields{b: hdr, what: "PyCodeObject"}
	typ := f.u64(l.ObjectObType)
	c := &codeInfo{hdr: hdr}
	c.FirstLine = int(f.i32(l.CodeCoFirstlineno))
	namePtr, filePtr, qualPtr := f.u64(l.CodeCoName), f.u64(l.CodeCoFilename), uint64(0)
	if l.CodeCoQualname >= 0 {
		qualPtr = f.u64(l.CodeCoQualname)
	}
	tableOff := l.CodeCoLinetable
	if l.CodeCoLnotab >= 0 {
		tableOff = l.CodeCoLnotab
	}
	tablePtr := f.u64(tableOff)
	if f.err != nil {
		return nil, f.err
	}
	t, err := d.typeAt(typ)
	if err != nil {
		return nil, err
	}
	if !d.isCode(t) {
		return nil, fmt.Errorf("object has type %q: %w", t.name, ErrWrongType)
	}
	if c.Name, err = d.str(namePtr, MaxNameLen); err != nil {
		return nil, fmt.Errorf("reading co_name: %w", err)
	}
	c.QualName = c.Name
	if l.CodeCoQualname >= 0 {
		if c.QualName, err = d.str(qualPtr, MaxNameLen); err != nil {
			return nil, fmt.Errorf("reading co_qualname: %w", err)
		}
	}
	if c.File, err = d.str(filePtr, MaxSourceLen); err != nil {
		return nil, fmt.Errorf("reading co_filename: %w", err)
	}
	c.Format = LineFormatFor(l.Major, l.Minor)
	table, trunc, err := d.bytesData(tablePtr, maxLineTable)
	if err == nil && trunc {
		err = fmt.Errorf("line table over %d bytes: %w", maxLineTable, memory.ErrTooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("reading line table: %w", err)
	}
	c.LineTable = []byte(table)
	if l.CodeCoCodeAdaptive >= 0 && l.CodeCoCodeAdaptive <= size {
		c.Bytecode = addr + uint64(l.CodeCoCodeAdaptive)
	}
	return c, nil
}
