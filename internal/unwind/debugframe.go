package unwind

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Bounds on the .debug_frame section of one object.
const (
	// MaxDebugFrame is the largest .debug_frame section accepted.
	MaxDebugFrame = 64 << 20
	// maxDebugFDEs bounds the FDEs indexed from one section.
	maxDebugFDEs = 1 << 20
)

// DebugFrame is the call-frame information of an object's .debug_frame
// section (what code built without unwind tables, -g only, has instead
// of .eh_frame): its FDEs, sorted by address, moved to where the object
// is loaded. It is read from the object's file (or its separate debug
// file), not from the target's memory: .debug_frame is not loaded.
type DebugFrame struct {
	fdes []fde // sorted by start, not overlapping
}

// Len is the number of FDEs indexed.
func (d *DebugFrame) Len() int {
	if d == nil {
		return 0
	}
	return len(d.fdes)
}

var errDebugFrame = errors.New("malformed .debug_frame")

// ParseDebugFrame indexes the FDEs of sec, a .debug_frame section (its
// bytes, as hostile as the target's memory), of an object whose
// link-time addresses are moved by bias where it is loaded. Unlike
// .eh_frame: a CIE's id is all ones (32- or 64-bit DWARF), an FDE's CIE
// pointer is an offset from the section's start, and addresses are
// absolute. An FDE whose CIE cannot be read is skipped; a record whose
// length is wrong ends the section. The result is never nil: it holds
// the FDEs read before any error.
func ParseDebugFrame(sec []byte, bias uint64) (*DebugFrame, error) {
	d := &DebugFrame{}
	if len(sec) > MaxDebugFrame {
		return d, fmt.Errorf(".debug_frame of %d bytes, limit %d", len(sec), MaxDebugFrame)
	}
	type cieResult struct {
		c   *cie
		err error
	}
	cies := map[uint64]cieResult{}
	cieAt := func(off uint64, is64 bool) (*cie, error) {
		if r, ok := cies[off]; ok {
			return r.c, r.err
		}
		var c *cie
		body, _, cis64, err := dfRecord(sec, off)
		if err == nil {
			id, n := dfID(body, cis64)
			switch {
			case cis64 != is64 || !isDebugCIE(id, cis64):
				err = fmt.Errorf("%w: no CIE at %#x", errBadCIE, off)
			default:
				c, err = cieFields(&buf{b: body, off: n, base: off}, off)
			}
		}
		if c != nil {
			c.locBias = bias
			if c.fdeEnc&0x70 != 0 {
				c, err = nil, fmt.Errorf("%w: relative FDE addresses in .debug_frame", errBadCIE)
			}
		}
		cies[off] = cieResult{c, err}
		return c, err
	}
	var err error
	for off := uint64(0); off < uint64(len(sec)); {
		body, next, is64, rerr := dfRecord(sec, off)
		if rerr != nil {
			err = rerr
			break
		}
		at := off
		off = next
		id, n := dfID(body, is64)
		if n == 0 || isDebugCIE(id, is64) {
			continue // a CIE (read when an FDE uses it), or padding
		}
		c, cerr := cieAt(id, is64)
		if cerr != nil {
			continue
		}
		f, ferr := parseFDE(body[n:], at, c)
		if ferr != nil || f.end == f.start || f.start+bias < f.start || f.end+bias < f.end {
			continue
		}
		f.start += bias
		f.end += bias
		if len(d.fdes) >= maxDebugFDEs {
			err = fmt.Errorf(".debug_frame: more than %d FDEs", maxDebugFDEs)
			break
		}
		d.fdes = append(d.fdes, *f)
	}
	sort.SliceStable(d.fdes, func(i, j int) bool { return d.fdes[i].start < d.fdes[j].start })
	// Overlapping ranges (hostile, or a linker's leftovers): the first
	// one wins, the others are dropped, so that a lookup needs one probe.
	out := d.fdes[:0]
	for _, f := range d.fdes {
		if len(out) > 0 && f.start < out[len(out)-1].end {
			continue
		}
		out = append(out, f)
	}
	d.fdes = out
	return d, err
}

// dfRecord returns the body (after its length field) of the record at
// off in sec, the offset of the next record, and whether it is in the
// 64-bit DWARF format.
func dfRecord(sec []byte, off uint64) (body []byte, next uint64, is64 bool, err error) {
	size := uint64(len(sec))
	if off > size || size-off < 4 {
		return nil, 0, false, fmt.Errorf("%w: record at %#x truncated", errDebugFrame, off)
	}
	n, hdr := uint64(le32(sec[off:])), uint64(4)
	if n == 0xffffffff {
		if size-off < 12 {
			return nil, 0, false, fmt.Errorf("%w: record at %#x truncated", errDebugFrame, off)
		}
		n, hdr, is64 = le64(sec[off+4:]), 12, true
	}
	if n > size-off-hdr {
		return nil, 0, false, fmt.Errorf("%w: record of %d bytes at %#x", errDebugFrame, n, off)
	}
	return sec[off+hdr : off+hdr+n], off + hdr + n, is64, nil
}

// dfID reads a record's CIE id or CIE pointer and its size (0 when the
// record is too short to hold one).
func dfID(body []byte, is64 bool) (uint64, int) {
	switch {
	case is64 && len(body) >= 8:
		return le64(body), 8
	case !is64 && len(body) >= 4:
		return uint64(le32(body)), 4
	}
	return 0, 0
}

func isDebugCIE(id uint64, is64 bool) bool {
	if is64 {
		return id == ^uint64(0)
	}
	return id == 0xffffffff
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// find returns the FDE covering pc, nil when none does.
func (d *DebugFrame) find(pc uint64) *fde {
	if d == nil {
		return nil
	}
	i := sort.Search(len(d.fdes), func(i int) bool { return d.fdes[i].start > pc })
	if i == 0 || pc >= d.fdes[i-1].end {
		return nil
	}
	return &d.fdes[i-1]
}
