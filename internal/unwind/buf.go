package unwind

import (
	"encoding/binary"
	"errors"
)

var errTruncated = errors.New("record truncated")

// buf reads a record held in memory; base is the target address of b[0]
// (for pc-relative pointers). A read past the end sets err and returns 0:
// callers check err once after a group of reads.
type buf struct {
	b    []byte
	off  int
	base uint64
	err  error
}

func (d *buf) fail() {
	if d.err == nil {
		d.err = errTruncated
	}
	d.off = len(d.b)
}

func (d *buf) left() int { return len(d.b) - d.off }

func (d *buf) bytes(n int) []byte {
	if n < 0 || n > d.left() {
		d.fail()
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *buf) u8() uint8 {
	s := d.bytes(1)
	if s == nil {
		return 0
	}
	return s[0]
}

func (d *buf) u16() uint16 {
	s := d.bytes(2)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(s)
}

func (d *buf) u32() uint32 {
	s := d.bytes(4)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(s)
}

func (d *buf) u64() uint64 {
	s := d.bytes(8)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(s)
}

func (d *buf) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := d.u8()
		if d.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 {
			return v
		}
	}
}

func (d *buf) sleb() int64 {
	var v int64
	shift := uint(0)
	for {
		c := d.u8()
		if d.err != nil {
			return 0
		}
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
}

func (d *buf) cstring() string {
	for i := d.off; i < len(d.b); i++ {
		if d.b[i] == 0 {
			s := string(d.b[d.off:i])
			d.off = i + 1
			return s
		}
	}
	d.fail()
	return ""
}

// Pointer encodings (DW_EH_PE_*).
const (
	peOmit    = 0xff
	peAbsptr  = 0x00
	peUleb    = 0x01
	peUdata2  = 0x02
	peUdata4  = 0x03
	peUdata8  = 0x04
	peSleb    = 0x09
	peSdata2  = 0x0a
	peSdata4  = 0x0b
	peSdata8  = 0x0c
	pePcrel   = 0x10
	peDatarel = 0x30
	peIndir   = 0x80
)

var errEncoding = errors.New("unsupported pointer encoding")

// pointer reads a value encoded with enc. datarel is the base of
// DW_EH_PE_datarel (the .eh_frame_hdr's address). Indirect pointers are
// refused (they only appear for personality routines, which are skipped).
func (d *buf) pointer(enc uint8, datarel uint64) uint64 {
	if enc == peOmit {
		return 0
	}
	at := d.base + uint64(d.off)
	var v uint64
	switch enc & 0x0f {
	case peAbsptr, peUdata8, peSdata8:
		v = d.u64()
	case peUleb:
		v = d.uleb()
	case peUdata2:
		v = uint64(d.u16())
	case peSdata2:
		v = uint64(int64(int16(d.u16())))
	case peUdata4:
		v = uint64(d.u32())
	case peSdata4:
		v = uint64(int64(int32(d.u32())))
	case peSleb:
		v = uint64(d.sleb())
	default:
		if d.err == nil {
			d.err = errEncoding
		}
		return 0
	}
	switch enc & 0x70 {
	case 0:
	case pePcrel:
		v += at
	case peDatarel:
		v += datarel
	default:
		if d.err == nil {
			d.err = errEncoding
		}
	}
	return v
}

// encSize is the size of a fixed-size encoding, 0 for a variable one.
func encSize(enc uint8) int {
	switch enc & 0x0f {
	case peAbsptr, peUdata8, peSdata8:
		return 8
	case peUdata4, peSdata4:
		return 4
	case peUdata2, peSdata2:
		return 2
	}
	return 0
}
