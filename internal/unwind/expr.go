package unwind

import (
	"errors"
	"fmt"
)

// Bounds of the DWARF expression evaluator.
const (
	maxExprStack = 64
	maxExprSteps = 1024
)

var errExpr = errors.New("malformed DWARF expression")

// eval computes a DWARF expression of a CFA or register rule, with the
// registers regs, reading memory through read8; initial is pushed first
// (the CFA, for register rules).
func eval(expr []byte, regs *Regs, read8 func(uint64) (uint64, error), initial []uint64) (uint64, error) {
	d := &buf{b: expr}
	stack := append(make([]uint64, 0, 8), initial...)
	push := func(v uint64) error {
		if len(stack) >= maxExprStack {
			return fmt.Errorf("%w: stack deeper than %d", errExpr, maxExprStack)
		}
		stack = append(stack, v)
		return nil
	}
	pop := func() (uint64, error) {
		if len(stack) == 0 {
			return 0, fmt.Errorf("%w: stack empty", errExpr)
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return v, nil
	}
	reg := func(n uint64) (uint64, error) {
		if n >= nregs {
			return 0, fmt.Errorf("%w: register %d", errExpr, n)
		}
		v, ok := regs.get(int(n))
		if !ok {
			return 0, fmt.Errorf("%w: register %d unknown", errExpr, n)
		}
		return v, nil
	}
	for steps := 0; d.left() > 0; steps++ {
		if steps >= maxExprSteps {
			return 0, fmt.Errorf("%w: more than %d steps", errExpr, maxExprSteps)
		}
		op := d.u8()
		var err error
		switch {
		case op >= 0x30 && op <= 0x4f: // lit0-31
			err = push(uint64(op - 0x30))
		case op >= 0x50 && op <= 0x6f: // reg0-31
			var v uint64
			if v, err = reg(uint64(op - 0x50)); err == nil {
				err = push(v)
			}
		case op >= 0x70 && op <= 0x8f: // breg0-31
			off := d.sleb()
			var v uint64
			if v, err = reg(uint64(op - 0x70)); err == nil {
				err = push(v + uint64(off))
			}
		case op == 0x90: // regx
			var v uint64
			if v, err = reg(d.uleb()); err == nil {
				err = push(v)
			}
		case op == 0x92: // bregx
			n := d.uleb()
			off := d.sleb()
			var v uint64
			if v, err = reg(n); err == nil {
				err = push(v + uint64(off))
			}
		case op == 0x03: // addr
			err = push(d.u64())
		case op == 0x08:
			err = push(uint64(d.u8()))
		case op == 0x09:
			err = push(uint64(int64(int8(d.u8()))))
		case op == 0x0a:
			err = push(uint64(d.u16()))
		case op == 0x0b:
			err = push(uint64(int64(int16(d.u16()))))
		case op == 0x0c:
			err = push(uint64(d.u32()))
		case op == 0x0d:
			err = push(uint64(int64(int32(d.u32()))))
		case op == 0x0e, op == 0x0f:
			err = push(d.u64())
		case op == 0x10:
			err = push(d.uleb())
		case op == 0x11:
			err = push(uint64(d.sleb()))
		case op == 0x12: // dup
			if len(stack) == 0 {
				return 0, fmt.Errorf("%w: stack empty", errExpr)
			}
			err = push(stack[len(stack)-1])
		case op == 0x13: // drop
			_, err = pop()
		case op == 0x14, op == 0x15: // over, pick
			i := uint64(1)
			if op == 0x15 {
				i = uint64(d.u8())
			}
			if i >= uint64(len(stack)) {
				return 0, fmt.Errorf("%w: pick %d of %d", errExpr, i, len(stack))
			}
			err = push(stack[uint64(len(stack))-1-i])
		case op == 0x16: // swap
			if len(stack) < 2 {
				return 0, fmt.Errorf("%w: stack empty", errExpr)
			}
			n := len(stack)
			stack[n-1], stack[n-2] = stack[n-2], stack[n-1]
		case op == 0x17: // rot
			if len(stack) < 3 {
				return 0, fmt.Errorf("%w: stack empty", errExpr)
			}
			n := len(stack)
			stack[n-1], stack[n-2], stack[n-3] = stack[n-2], stack[n-3], stack[n-1]
		case op == 0x06: // deref
			var a, v uint64
			if a, err = pop(); err == nil {
				if v, err = read8(a); err == nil {
					err = push(v)
				}
			}
		case op == 0x94: // deref_size
			size := d.u8()
			var a, v uint64
			if a, err = pop(); err == nil {
				if v, err = read8(a); err == nil {
					if size < 8 {
						v &= 1<<(8*uint(size)) - 1
					}
					err = push(v)
				}
			}
		case op == 0x19, op == 0x1f, op == 0x20: // abs, neg, not
			var a uint64
			if a, err = pop(); err == nil {
				switch op {
				case 0x19:
					if int64(a) < 0 {
						a = -a
					}
				case 0x1f:
					a = -a
				case 0x20:
					a = ^a
				}
				err = push(a)
			}
		case op == 0x23: // plus_uconst
			var a uint64
			if a, err = pop(); err == nil {
				err = push(a + d.uleb())
			}
		case op >= 0x1a && op <= 0x2e && op != 0x23 && op != 0x28 && op != 0x2f && op != 0x1f && op != 0x20:
			var b, a uint64
			if b, err = pop(); err != nil {
				return 0, err
			}
			if a, err = pop(); err != nil {
				return 0, err
			}
			var v uint64
			if v, err = binop(op, a, b); err == nil {
				err = push(v)
			}
		case op == 0x2f, op == 0x28: // skip, bra
			off := int(int16(d.u16()))
			take := true
			if op == 0x28 {
				var c uint64
				if c, err = pop(); err != nil {
					return 0, err
				}
				take = c != 0
			}
			if take {
				to := d.off + off
				if to < 0 || to > len(d.b) {
					return 0, fmt.Errorf("%w: branch out of the expression", errExpr)
				}
				d.off = to
			}
		case op == 0x96: // nop
		default:
			return 0, fmt.Errorf("%w: opcode %#x", errExpr, op)
		}
		if err != nil {
			return 0, err
		}
		if d.err != nil {
			return 0, fmt.Errorf("%w: %v", errExpr, d.err)
		}
	}
	return pop()
}

func binop(op uint8, a, b uint64) (uint64, error) {
	bool2 := func(c bool) uint64 {
		if c {
			return 1
		}
		return 0
	}
	switch op {
	case 0x1a:
		return a & b, nil
	case 0x1b, 0x1d:
		if b == 0 {
			return 0, fmt.Errorf("%w: division by zero", errExpr)
		}
		if op == 0x1b {
			if int64(a) == -1<<63 && int64(b) == -1 {
				return a, nil
			}
			return uint64(int64(a) / int64(b)), nil
		}
		return a % b, nil
	case 0x1c:
		return a - b, nil
	case 0x1e:
		return a * b, nil
	case 0x21:
		return a | b, nil
	case 0x22:
		return a + b, nil
	case 0x24:
		if b >= 64 {
			return 0, nil
		}
		return a << b, nil
	case 0x25:
		if b >= 64 {
			return 0, nil
		}
		return a >> b, nil
	case 0x26:
		return uint64(int64(a) >> min(b, 63)), nil
	case 0x27:
		return a ^ b, nil
	case 0x29:
		return bool2(a == b), nil
	case 0x2a:
		return bool2(int64(a) >= int64(b)), nil
	case 0x2b:
		return bool2(int64(a) > int64(b)), nil
	case 0x2c:
		return bool2(int64(a) <= int64(b)), nil
	case 0x2d:
		return bool2(int64(a) < int64(b)), nil
	case 0x2e:
		return bool2(a != b), nil
	}
	return 0, fmt.Errorf("%w: opcode %#x", errExpr, op)
}
