package ptrace

import (
	"fmt"

	"golang.org/x/sys/unix"
)

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

// inspect reads what Held reports of a held thread: on amd64 the thread
// pointer is fs_base, and a thread interrupted in a system call has its
// number in orig_rax (>= 0; an interrupt entry stores -1) and a restart
// code in rax (the stop happens before the kernel rewinds the call).
func inspect(tid int) (Held, error) {
	r, err := GetRegs(tid)
	if err != nil {
		return Held{}, err
	}
	h := Held{TP: r.Fs_base, Syscall: -1}
	if nr := int64(r.Orig_rax); nr >= 0 && interruptedReturn(int64(r.Rax)) {
		h.Syscall = nr
		h.Args = [6]uint64{r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9}
	}
	return h, nil
}

// EINTRSyscalls are the system calls that fail with EINTR when a ptrace
// stop interrupts them, even with no signal handler (signal(7): epoll,
// sigtimedwait, io_getevents, System V semop...), where the others
// restart (msgrcv does: checked here).
var EINTRSyscalls = map[int]string{34: "pause", 65: "semop", 128: "rt_sigtimedwait", 130: "rt_sigsuspend",
	208: "io_getevents", 220: "semtimedop", 232: "epoll_wait", 281: "epoll_pwait", 333: "io_pgetevents", 441: "epoll_pwait2"}

// RewindEINTR makes a thread that a ptrace interrupt (no signal) stopped
// inside one of EINTRSyscalls, which therefore failed with EINTR, behave
// as if the interrupt had never been: its result becomes ERESTARTNOHAND,
// the code the kernel gives a call that a signal without a handler ends.
// The thread is stopped inside the kernel's signal delivery (get_signal)
// on its way back from the call, and the kernel looks at that code right
// after, when the thread resumes: if a signal with a handler is pending
// by then (one sent while the thread was held), the call fails with
// EINTR as it would have without pyglass, and the handler runs; if not,
// the call is run again with its arguments, still in their registers (a
// timeout starts again in full). Without this, Python 2.7 raises IOError
// from epoll.poll, and C code may give up. Doing the restart here
// instead (rip back to the syscall instruction) loses that choice: a
// signal that came while the thread was held ran its C handler and the
// call blocked again, so Python's handler waited for the next event.
func RewindEINTR(tid int) {
	r, err := GetRegs(tid)
	if err != nil {
		return
	}
	if _, ok := EINTRSyscalls[int(int64(r.Orig_rax))]; !ok || int64(r.Rax) != -int64(unix.EINTR) {
		return
	}
	errRestartNoHand := int64(-514)
	r.Rax = uint64(errRestartNoHand)
	SetRegs(tid, r)
}

// regsEIO describes the registers the kernel checks when it refuses a
// write with EIO (a selector it deems invalid, a base above user space).
func regsEIO(r *Regs) string {
	return fmt.Sprintf("cs %#x ss %#x ds %#x es %#x fs %#x gs %#x fs_base %#x gs_base %#x eflags %#x",
		r.Cs, r.Ss, r.Ds, r.Es, r.Fs, r.Gs, r.Fs_base, r.Gs_base, r.Eflags)
}

// badUserRegs says why r cannot be a user thread's registers, or "" if it
// can. The kernel sets the general registers one by one, checking the
// selectors and bases as it meets them: a write it refuses with EIO has
// already changed rip and the registers before it. So SetRegs checks
// first and writes nothing then.
func badUserRegs(r *Regs) string {
	const maxBase = 1<<56 - 4096 // TASK_SIZE_MAX with 5-level paging
	sel := func(v uint64) bool { return v == 0 || v&3 == 3 && v <= 0xffff }
	switch {
	case r.Cs&3 != 3 || r.Cs > 0xffff, r.Ss&3 != 3 || r.Ss > 0xffff:
		return "code or stack selector not of user mode: " + regsEIO(r)
	case !sel(r.Ds) || !sel(r.Es) || !sel(r.Fs) || !sel(r.Gs):
		return "data selector not of user mode: " + regsEIO(r)
	case r.Fs_base >= maxBase || r.Gs_base >= maxBase:
		return "segment base above user space: " + regsEIO(r)
	}
	return ""
}
