package cpython

import (
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// fields reads the members of one structure from a copy of its bytes,
// checking that each member the layout places lies inside the copy: a
// layout that does not fit the structure (a forged or corrupted
// _Py_DebugOffsets, a hand-made layout) is an error, never an
// out-of-range slice. The first failure is kept in err; later reads
// return 0.
type fields struct {
	b    []byte
	what string // the structure, for the error
	err  error
}

// at returns the n bytes at off, or nil after recording the error.
func (f *fields) at(off, n int) []byte {
	if f.err != nil {
		return nil
	}
	if off < 0 || n > len(f.b) || off > len(f.b)-n {
		f.err = fmt.Errorf("%s: a field of %d bytes at offset %d of %d: %w", f.what, n, off, len(f.b), layout.ErrBadLayout)
		return nil
	}
	return f.b[off : off+n]
}

// u64 reads an 8-byte member (a pointer or a Py_ssize_t).
func (f *fields) u64(off int) uint64 {
	if b := f.at(off, 8); b != nil {
		return memory.Order.Uint64(b)
	}
	return 0
}

// i32 reads a C int member.
func (f *fields) i32(off int) int32 {
	if b := f.at(off, 4); b != nil {
		return int32(memory.Order.Uint32(b))
	}
	return 0
}

// u8 reads a one-byte member.
func (f *fields) u8(off int) uint8 {
	if b := f.at(off, 1); b != nil {
		return b[0]
	}
	return 0
}
