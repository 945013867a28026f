package unwind

import (
	"errors"
	"fmt"
)

// Bounds on what a hostile .eh_frame or .debug_frame may make the parser do.
const (
	maxRecord      = 1 << 16 // bytes of one CIE or FDE
	maxOps         = 1 << 14 // CFA instructions run for one row
	maxStateStack  = 32      // DW_CFA_remember_state depth
	maxAugmentData = 1 << 10
)

var (
	errBadCIE = errors.New("malformed CIE")
	errBadFDE = errors.New("malformed FDE")
)

// cie is a parsed Common Information Entry.
type cie struct {
	codeAlign uint64
	dataAlign int64
	ra        int
	fdeEnc    uint8
	lsdaEnc   uint8
	hasAug    bool // 'z': FDEs carry augmentation data
	signal    bool // 'S': the frames of its FDEs are signal frames
	instr     []byte
	// locBias is added to DW_CFA_set_loc's address: the load bias of a
	// .debug_frame's link-time addresses (0 in .eh_frame).
	locBias uint64
}

// parseCIE parses a CIE whose bytes after the length field (from the CIE
// id on) are b, at target address base.
func parseCIE(b []byte, base uint64) (*cie, error) {
	d := &buf{b: b, base: base}
	if id := d.u32(); id != 0 || d.err != nil {
		return nil, errBadCIE
	}
	return cieFields(d, base)
}

// cieFields parses a CIE from its version on (d is past its id).
func cieFields(d *buf, base uint64) (*cie, error) {
	version := d.u8()
	if version != 1 && version != 3 && version != 4 {
		return nil, fmt.Errorf("%w: version %d", errBadCIE, version)
	}
	aug := d.cstring()
	c := &cie{fdeEnc: peAbsptr, lsdaEnc: peOmit}
	if len(aug) > 0 && aug[0] != 'z' && aug != "eh" {
		return nil, fmt.Errorf("%w: augmentation %q", errBadCIE, aug)
	}
	if aug == "eh" {
		d.u64() // the old GCC exception table pointer
	}
	if version == 4 {
		// Address size, segment selector size: 64-bit flat addresses only.
		if d.u8() != 8 || d.u8() != 0 {
			return nil, errBadCIE
		}
	}
	c.codeAlign = d.uleb()
	c.dataAlign = d.sleb()
	if version == 1 {
		c.ra = int(d.u8())
	} else {
		c.ra = int(min(d.uleb(), 1<<16))
	}
	if len(aug) > 0 && aug[0] == 'z' {
		c.hasAug = true
		n := d.uleb()
		if n > maxAugmentData {
			return nil, errBadCIE
		}
		a := &buf{b: d.bytes(int(n)), base: base + uint64(d.off)}
		if d.err != nil {
			return nil, errBadCIE
		}
		a.base -= uint64(len(a.b))
		for _, ch := range aug[1:] {
			switch ch {
			case 'L':
				c.lsdaEnc = a.u8()
			case 'R':
				c.fdeEnc = a.u8()
			case 'P':
				enc := a.u8() &^ peIndir
				a.pointer(enc, 0)
			case 'S':
				c.signal = true
			case 'B', 'G':
				// arm64: B-key pointer authentication; MTE-tagged frames.
			default:
				// An unknown letter: the rest of the data cannot be
				// read, but the instructions can (their length is known).
				a.off = len(a.b)
			}
		}
		if a.err != nil {
			return nil, fmt.Errorf("%w: augmentation data: %v", errBadCIE, a.err)
		}
	}
	if d.err != nil {
		return nil, errBadCIE
	}
	c.instr = d.b[d.off:]
	return c, nil
}

// fde is a parsed Frame Description Entry: the code range it describes.
type fde struct {
	cie        *cie
	start, end uint64
	instr      []byte
}

// parseFDE parses the FDE whose bytes after the CIE pointer are b, at
// target address base, with its CIE c.
func parseFDE(b []byte, base uint64, c *cie) (*fde, error) {
	d := &buf{b: b, base: base}
	f := &fde{cie: c}
	f.start = d.pointer(c.fdeEnc, 0)
	f.end = f.start + d.pointer(c.fdeEnc&0x0f, 0)
	if c.hasAug {
		n := d.uleb()
		if n > maxAugmentData {
			return nil, errBadFDE
		}
		d.bytes(int(n))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", errBadFDE, d.err)
	}
	if f.end < f.start {
		return nil, fmt.Errorf("%w: range %#x-%#x", errBadFDE, f.start, f.end)
	}
	f.instr = d.b[d.off:]
	return f, nil
}

// Kinds of register rules.
type ruleKind uint8

const (
	ruleSame      ruleKind = iota // unchanged (callee-saved, never spilled)
	ruleUndef                     // not recoverable (the return address: end of stack)
	ruleOffset                    // saved at CFA+off
	ruleValOffset                 // is CFA+off
	ruleReg                       // in register reg
	ruleExpr                      // saved at the address expr computes
	ruleValExpr                   // is what expr computes
)

type rule struct {
	kind ruleKind
	off  int64
	reg  int
	expr []byte
}

// row is the unwind rule set at one code address.
type row struct {
	cfaReg  int
	cfaOff  int64
	cfaExpr []byte // set: the CFA is what it computes
	regs    [nregs]rule
}

var errCFA = errors.New("malformed CFA instructions")

// rowAt runs the CIE's and the FDE's instructions up to pc and returns
// the rules in effect there.
func rowAt(f *fde, pc uint64) (row, error) {
	var init row
	ops := 0
	if _, err := run(f.cie, f.cie.instr, &init, nil, ^uint64(0), 0, &ops); err != nil {
		return row{}, err
	}
	r := init
	_, err := run(f.cie, f.instr, &r, &init, pc, f.start, &ops)
	return r, err
}

// run interprets CFA instructions into r, starting at code address loc,
// until an advance passes pc. init is the CIE's row (for restore; nil
// while running the CIE itself).
func run(c *cie, instr []byte, r *row, init *row, pc, loc uint64, ops *int) (uint64, error) {
	d := &buf{b: instr}
	var stack []row
	setRule := func(reg uint64, ru rule) {
		if reg < nregs {
			r.regs[reg] = ru
		}
	}
	restore := func(reg uint64) {
		if reg < nregs {
			if init != nil {
				r.regs[reg] = init.regs[reg]
			} else {
				r.regs[reg] = rule{}
			}
		}
	}
	advance := func(delta uint64) bool {
		loc += delta * c.codeAlign
		return loc > pc
	}
	for d.left() > 0 {
		if *ops++; *ops > maxOps {
			return loc, fmt.Errorf("%w: more than %d", errCFA, maxOps)
		}
		op := d.u8()
		switch op >> 6 {
		case 1: // DW_CFA_advance_loc
			if advance(uint64(op & 0x3f)) {
				return loc, nil
			}
			continue
		case 2: // DW_CFA_offset
			setRule(uint64(op&0x3f), rule{kind: ruleOffset, off: int64(d.uleb()) * c.dataAlign})
			continue
		case 3: // DW_CFA_restore
			restore(uint64(op & 0x3f))
			continue
		}
		switch op {
		case 0x00: // nop
		case 0x01: // set_loc
			loc = d.pointer(c.fdeEnc, 0) + c.locBias
			if loc > pc {
				return loc, d.err
			}
		case 0x02:
			if advance(uint64(d.u8())) {
				return loc, d.err
			}
		case 0x03:
			if advance(uint64(d.u16())) {
				return loc, d.err
			}
		case 0x04:
			if advance(uint64(d.u32())) {
				return loc, d.err
			}
		case 0x05: // offset_extended
			reg := d.uleb()
			setRule(reg, rule{kind: ruleOffset, off: int64(d.uleb()) * c.dataAlign})
		case 0x06: // restore_extended
			restore(d.uleb())
		case 0x07: // undefined
			setRule(d.uleb(), rule{kind: ruleUndef})
		case 0x08: // same_value
			setRule(d.uleb(), rule{kind: ruleSame})
		case 0x09: // register
			reg := d.uleb()
			setRule(reg, rule{kind: ruleReg, reg: int(min(d.uleb(), nregs))})
		case 0x0a: // remember_state
			if len(stack) >= maxStateStack {
				return loc, fmt.Errorf("%w: state stack deeper than %d", errCFA, maxStateStack)
			}
			stack = append(stack, *r)
		case 0x0b: // restore_state
			if len(stack) == 0 {
				return loc, fmt.Errorf("%w: restore_state with no state", errCFA)
			}
			// The whole row, CFA rule included (DWARF 5, 6.4.2.4).
			*r = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
		case 0x0c: // def_cfa
			r.cfaReg = int(min(d.uleb(), nregs))
			r.cfaOff = int64(d.uleb())
			r.cfaExpr = nil
		case 0x0d: // def_cfa_register
			r.cfaReg = int(min(d.uleb(), nregs))
			r.cfaExpr = nil
		case 0x0e: // def_cfa_offset
			r.cfaOff = int64(d.uleb())
		case 0x0f: // def_cfa_expression
			r.cfaExpr = d.bytes(int(min(d.uleb(), maxRecord)))
			if r.cfaExpr == nil {
				r.cfaExpr = []byte{}
			}
		case 0x10: // expression
			reg := d.uleb()
			setRule(reg, rule{kind: ruleExpr, expr: d.bytes(int(min(d.uleb(), maxRecord)))})
		case 0x11: // offset_extended_sf
			reg := d.uleb()
			setRule(reg, rule{kind: ruleOffset, off: d.sleb() * c.dataAlign})
		case 0x12: // def_cfa_sf
			r.cfaReg = int(min(d.uleb(), nregs))
			r.cfaOff = d.sleb() * c.dataAlign
			r.cfaExpr = nil
		case 0x13: // def_cfa_offset_sf
			r.cfaOff = d.sleb() * c.dataAlign
		case 0x14: // val_offset
			reg := d.uleb()
			setRule(reg, rule{kind: ruleValOffset, off: int64(d.uleb()) * c.dataAlign})
		case 0x15: // val_offset_sf
			reg := d.uleb()
			setRule(reg, rule{kind: ruleValOffset, off: d.sleb() * c.dataAlign})
		case 0x16: // val_expression
			reg := d.uleb()
			setRule(reg, rule{kind: ruleValExpr, expr: d.bytes(int(min(d.uleb(), maxRecord)))})
		case 0x2d: // AArch64 negate_ra_state (GNU_window_save on SPARC): the
			// return address is signed; it is stripped when used.
		case 0x2e: // GNU_args_size
			d.uleb()
		case 0x2f: // GNU_negative_offset_extended
			reg := d.uleb()
			setRule(reg, rule{kind: ruleOffset, off: -int64(d.uleb()) * c.dataAlign})
		default:
			return loc, fmt.Errorf("%w: opcode %#x", errCFA, op)
		}
		if d.err != nil {
			return loc, fmt.Errorf("%w: %v", errCFA, d.err)
		}
	}
	return loc, nil
}
