package ptrace

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

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

// svc0 is "svc #0" as it is in memory.
const svc0 = 0xd4000001

// inspect reads what Held reports of a held thread: on arm64 the thread
// pointer is tpidr_el0 (regset NT_ARM_TLS). The kernel rewinds an
// interrupted system call before the stop (pc on its "svc #0", x0 the
// first argument again, x8 the number), so a thread whose pc is on an
// "svc #0" was in that system call.
func inspect(tid int) (Held, error) {
	r, err := GetRegs(tid)
	if err != nil {
		return Held{}, err
	}
	h := Held{Syscall: -1}
	var tls [8]byte
	if n, err := getRegset(tid, unix.NT_ARM_TLS, tls[:]); err == nil && n >= 8 {
		h.TP = binary.LittleEndian.Uint64(tls[:])
	}
	var ins [4]byte
	if n, err := unix.PtracePeekText(tid, uintptr(r.Pc), ins[:]); err == nil && n == 4 && binary.LittleEndian.Uint32(ins[:]) == svc0 {
		h.Syscall = int64(r.Regs[8])
		copy(h.Args[:], r.Regs[:6])
	}
	return h, nil
}

// EINTRSyscalls are the system calls that fail with EINTR when a ptrace
// stop interrupts them, even with no signal handler (signal(7)).
var EINTRSyscalls = map[int]string{137: "rt_sigtimedwait", 133: "rt_sigsuspend", 4: "io_getevents",
	22: "epoll_pwait", 292: "io_pgetevents", 441: "epoll_pwait2", 192: "semtimedop", 193: "semop"}

// RewindEINTR does nothing on arm64: the kernel decides whether to
// restart a call before the stop where pyglass holds the thread, and
// the call's first argument (x0) has been overwritten by its result.
func RewindEINTR(tid int) {}

// regsEIO describes the registers the kernel checks when it refuses a
// write with EIO or EINVAL (the processor state).
func regsEIO(r *Regs) string { return fmt.Sprintf("pstate %#x", r.Pstate) }

// badUserRegs says why r cannot be a user thread's registers, or "" if it
// can. arm64's kernel checks the processor state before it writes
// anything, so only a 64-bit EL0 state is asked for here.
func badUserRegs(r *Regs) string {
	if r.Pstate&0x1f != 0 { // PSR_MODE32_BIT | PSR_MODE_MASK: EL0t, 64-bit
		return "processor state not of 64-bit user mode: " + regsEIO(r)
	}
	return ""
}
