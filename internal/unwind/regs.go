package unwind

import "fmt"

// Arch is the machine of the target.
type Arch int

const (
	AMD64 Arch = iota + 1
	ARM64
)

// nregs is the number of DWARF registers tracked: amd64 0-16 (16 is the
// return address, rip), arm64 0-31 (x0-x30, sp) and 32, used here for pc.
const nregs = 33

// Regs are a thread's registers by DWARF number.
type Regs struct {
	v    [nregs]uint64
	have uint64 // bit i: v[i] is known
}

func (r *Regs) set(i int, v uint64) {
	if i >= 0 && i < nregs {
		r.v[i], r.have = v, r.have|1<<i
	}
}

func (r *Regs) get(i int) (uint64, bool) {
	if i < 0 || i >= nregs || r.have&(1<<i) == 0 {
		return 0, false
	}
	return r.v[i], true
}

// The registers with a role, per architecture.
func (a Arch) sp() int {
	if a == ARM64 {
		return 31
	}
	return 7
}

func (a Arch) pc() int {
	if a == ARM64 {
		return 32
	}
	return 16
}

func (a Arch) fp() int {
	if a == ARM64 {
		return 29
	}
	return 6
}

// amd64Prstatus maps DWARF numbers 0-16 to indexes in struct
// user_regs_struct (NT_PRSTATUS, PTRACE_GETREGS).
var amd64Prstatus = [17]int{10, 12, 11, 5, 13, 14, 4, 19, 9, 8, 7, 6, 3, 2, 1, 0, 16}

// FromPrstatus makes Regs of the general registers laid out as an ELF
// core's NT_PRSTATUS holds them (what ptrace's GETREGS gives): struct
// user_regs_struct on amd64, user_pt_regs on arm64.
func FromPrstatus(a Arch, words []uint64) (Regs, error) {
	var r Regs
	switch a {
	case AMD64:
		if len(words) < 20 {
			return r, fmt.Errorf("%d register words, want 27", len(words))
		}
		for dw, i := range amd64Prstatus {
			r.set(dw, words[i])
		}
	case ARM64:
		if len(words) < 33 {
			return r, fmt.Errorf("%d register words, want 34", len(words))
		}
		for i := 0; i < 33; i++ {
			r.set(i, words[i])
		}
	default:
		return r, fmt.Errorf("unknown architecture %d", a)
	}
	return r, nil
}

// PC returns the instruction pointer of r.
func (r *Regs) PC(a Arch) uint64 { v, _ := r.get(a.pc()); return v }

// SP returns the stack pointer of r.
func (r *Regs) SP(a Arch) uint64 { v, _ := r.get(a.sp()); return v }
