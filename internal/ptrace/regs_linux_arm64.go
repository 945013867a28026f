package ptrace

import "golang.org/x/sys/unix"

// Regs are the general registers of an arm64 thread (struct user_pt_regs).
type Regs unix.PtraceRegs

// fpRegset is the regset holding the FP/SIMD registers (NT_PRFPREG).
// SVE state (NT_ARM_SVE) is not saved: the calls pyglass makes do not
// touch it beyond the FP/SIMD view.
const fpRegset = unix.NT_PRFPREG

// PC returns the program counter.
func (r *Regs) PC() uint64 { return r.Pc }

// SP returns the stack pointer.
func (r *Regs) SP() uint64 { return r.Sp }

// SyscallInstr is the machine code of the syscall instruction ("svc #0", d4000001).
var SyscallInstr = []byte{0x01, 0x00, 0x00, 0xd4}
