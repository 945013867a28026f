package ptrace

import "golang.org/x/sys/unix"

// Regs are the general registers of an amd64 thread (struct user_regs_struct).
type Regs unix.PtraceRegs

// fpRegset is the regset holding the x87/SSE/AVX/... state (XSAVE layout).
const fpRegset = unix.NT_X86_XSTATE

// PC returns the instruction pointer.
func (r *Regs) PC() uint64 { return r.Rip }

// SP returns the stack pointer.
func (r *Regs) SP() uint64 { return r.Rsp }

// SyscallInstr is the machine code of the syscall instruction ("syscall", 0f 05).
var SyscallInstr = []byte{0x0f, 0x05}
