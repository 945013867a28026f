package ptrace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
)

// ErrPermission is wrapped by errors caused by ptrace being denied: the
// errs.Permission kind.
var ErrPermission = errs.Permission

// ExplainAttachError turns an EPERM/ESRCH from seizing pid into an error
// that says why, wrapping ErrPermission or procfs.ErrNoProcess; other errors are returned
// unchanged.
func ExplainAttachError(pid int, err error) error {
	return explainSeize(pid, pid, err)
}

// AlreadyTraced is the refusal to seize thread Tid of process Pid
// because Tracer (a thread id, as /proc/TID/status's TracerPid) traced
// it when the refusal was looked at. It wraps ErrPermission.
type AlreadyTraced struct {
	Pid, Tid, Tracer int
	Comm             string // the tracer's name, "" when unknown
	Err              error  // the system call's error
}

func (e *AlreadyTraced) Error() string {
	what := fmt.Sprintf("process %d", e.Pid)
	if e.Tid != e.Pid {
		what = fmt.Sprintf("thread %d of process %d", e.Tid, e.Pid)
	}
	return fmt.Sprintf("%v: %s is already traced by pid %d (%s) (%v)", ErrPermission, what, e.Tracer, e.Comm, e.Err)
}

func (e *AlreadyTraced) Unwrap() []error { return []error{ErrPermission, e.Err} }

// explainSeize is ExplainAttachError for thread tid of pid: the thread
// refused may be traced when the main thread is not.
func explainSeize(pid, tid int, err error) error {
	switch {
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("%w: %v", procfs.ErrNoProcess, err)
	case !errors.Is(err, unix.EPERM):
		return err
	}
	if st, serr := procfs.New(pid).TaskStatus(tid); serr == nil && st.TracerPid != 0 {
		return &AlreadyTraced{Pid: pid, Tid: tid, Tracer: st.TracerPid, Comm: commOf(st.TracerPid), Err: err}
	}
	return fmt.Errorf("%w: %s (%v)", ErrPermission, whyEPERM(pid), err)
}

// seizeOnce seizes thread tid of pid, explaining a refusal. A refusal
// with no tracer to be seen just after is tried once more at once: the
// tracer (often another pyglass) may have let go in between, and a real
// refusal (Yama, capabilities, an LSM) refuses again.
func seizeOnce(pid, tid int) error {
	err := Seize(tid, unix.PTRACE_O_TRACESYSGOOD)
	if err == nil {
		return nil
	}
	var traced *AlreadyTraced
	if errors.Is(err, unix.EPERM) {
		if e := explainSeize(pid, tid, err); errors.As(e, &traced) {
			return e
		}
		if err = Seize(tid, unix.PTRACE_O_TRACESYSGOOD); err == nil {
			return nil
		}
	}
	return explainSeize(pid, tid, err)
}

// commOf is the kernel's name of process pid, "" when unknown.
func commOf(pid int) string {
	c, _ := procfs.New(pid).Comm()
	return c
}

// whyEPERM says why seizing pid, traced by no one, was refused.
func whyEPERM(pid int) string {
	st, err := procfs.New(pid).Status()
	if scope, ok := procfs.PtraceScope(); ok && scope != 0 {
		s := strconv.Itoa(scope)
		if os.Geteuid() == 0 {
			return "kernel.yama.ptrace_scope=" + s + " forbids it (CAP_SYS_PTRACE is needed; 3 forbids every attach)"
		}
		return "kernel.yama.ptrace_scope=" + s + " forbids it (run as root with CAP_SYS_PTRACE or set it to 0)"
	}
	if self, serr := procfs.Self().Status(); serr == nil && !self.HasCap(unix.CAP_SYS_PTRACE) {
		if err == nil && st.RealUID() != os.Getuid() {
			return fmt.Sprintf("process %d belongs to another user (Uid %d) and CAP_SYS_PTRACE is missing", pid, st.RealUID())
		}
		return "CAP_SYS_PTRACE is missing (the target may be non-dumpable or setuid)"
	}
	return "denied by the kernel (seccomp, LSM or a non-dumpable target)"
}

// Frozen is a process whose every thread is held in a ptrace stop.
type Frozen struct {
	Pid   int
	Tids  []int // the held threads, sorted
	t     *Tracer
	sigs  map[int]syscall.Signal // threads held in a signal-delivery stop
	kinds map[int]StopKind       // how each held thread stopped
	start time.Time              // when the first thread was seized
	// OnThaw, when set, is called by the first Thaw with how long the
	// threads were held: from before the first seize to after the last
	// detach.
	OnThaw func(held time.Duration)
}

// Freeze seizes and interrupts every thread of pid, re-listing
// /proc/PID/task until no new thread appears, and waits until all are
// stopped. Threads that were stopped by a signal (SIGSTOP) are held too
// and stay stopped after Thaw. On error every held thread is released.
func Freeze(pid int) (*Frozen, error) { return freeze(pid, NewTracer()) }

// FreezeHere is Freeze with the calling goroutine's OS thread as the
// tracer (see NewTracerHere): it locks the goroutine to its thread until
// Thaw, which must be called from the same goroutine, as must Inspect
// and RawRegs. It is the quicker when the machine is busy.
func FreezeHere(pid int) (*Frozen, error) {
	runtime.LockOSThread()
	return freeze(pid, NewTracerHere())
}

func freeze(pid int, t *Tracer) (*Frozen, error) {
	f := &Frozen{Pid: pid, t: t, sigs: map[int]syscall.Signal{}, kinds: map[int]StopKind{}, start: time.Now()}
	held := map[int]bool{}
	err := f.t.Do(func() error {
		for round := 0; round < 100; round++ {
			tids, err := procfs.New(pid).TaskIDs()
			if err != nil {
				if len(held) == 0 {
					return fmt.Errorf("%w: %v", procfs.ErrNoProcess, err)
				}
				return err
			}
			var fresh []int
			for _, tid := range tids {
				if held[tid] {
					continue
				}
				if err := seizeOnce(pid, tid); err != nil {
					if errors.Is(err, procfs.ErrNoProcess) {
						continue // exited meanwhile
					}
					if Exiting(pid, tid) {
						continue // being torn down: the kernel refuses it (EPERM)
					}
					return err
				}
				held[tid] = true
				if err := Interrupt(tid); err != nil && !errors.Is(err, unix.ESRCH) {
					return err
				}
				fresh = append(fresh, tid)
			}
			deadline := time.Now().Add(5 * time.Second)
			for _, tid := range fresh {
				for tries := 0; ; tries++ {
					st, err := WaitUntil(tid, deadline, nil)
					if err != nil {
						if errors.Is(err, unix.ECHILD) {
							delete(held, tid)
							break
						}
						return fmt.Errorf("stopping thread %d: %w", tid, err)
					}
					if st.Kind == StopExited {
						delete(held, tid)
						break
					}
					if st.Kind == StopSignal {
						f.sigs[tid] = st.Sig // detach re-delivers it
					}
					f.kinds[tid] = st.Kind
					if st.Kind != StopSyscall && st.Kind != StopEvent || tries > 100 {
						break
					}
					Cont(tid, 0)
				}
			}
			if len(fresh) == 0 {
				return nil
			}
		}
		return errors.New("freezing threads: thread list never settled")
	})
	for tid := range held {
		f.Tids = append(f.Tids, tid)
	}

	sort.Ints(f.Tids)
	if err != nil {
		f.Thaw()
		return nil, fmt.Errorf("freezing %d: %w", pid, err)
	}
	return f, nil
}

// Held is what the kernel says of one held thread, read while it is held.
type Held struct {
	// Stopped is set for a thread that was in a group stop (SIGSTOP and
	// the like) before it was seized: it stays stopped after Thaw.
	Stopped bool
	// TP is the thread pointer (fs_base on amd64, tpidr_el0 on arm64),
	// 0 when it could not be read.
	TP uint64
	// Syscall is the system call the thread was blocked in when it was
	// interrupted (the kernel restarts it on Thaw), -1 when it was
	// running or runnable outside any system call.
	Syscall int64
	// Args are the system call's arguments (when Syscall >= 0).
	Args [6]uint64
}

// Inspect reads, for every held thread, its thread pointer and the
// system call it was interrupted in. A thread whose registers cannot be
// read is left out.
func (f *Frozen) Inspect() map[int]Held {
	out := make(map[int]Held, len(f.Tids))
	if f.t == nil {
		return out
	}
	f.t.Do(func() error {
		for _, tid := range f.Tids {
			h, err := inspect(tid)
			if err != nil {
				continue
			}
			h.Stopped = f.kinds[tid] == StopGroup
			out[tid] = h
		}
		return nil
	})
	return out
}

// restartErrnos are the values a system call interrupted by a ptrace
// stop returns into the return-value register before the kernel restarts
// it (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK),
// and EINTR.
func interruptedReturn(v int64) bool {
	switch v {
	case -512, -513, -514, -516, -int64(unix.EINTR):
		return true
	}
	return false
}

// Thaw detaches every held thread, re-delivering signals that arrived
// while it was held. A thread of a process in group-stop is stopped again
// by the kernel. Thaw is idempotent.
func (f *Frozen) Thaw() error {
	if f.t == nil {
		return nil
	}
	var first error
	if err := f.t.Do(func() error {
		for _, tid := range f.Tids {
			if f.kinds[tid] == StopInterrupt && f.sigs[tid] == 0 {
				// (a thread stopped by a signal gets it and the EINTR
				// it implies, as without pyglass)
				RewindEINTR(tid)
			}
			if err := release(tid, f.sigs[tid], 200*time.Millisecond); err != nil && first == nil {
				first = err
			}
		}
		return nil
	}); err != nil {
		return err // another thread than FreezeHere's: a bug of the caller
	}
	if f.t.here != 0 && attachedHere() == 0 {
		// (a tracee still attached, a bug, keeps the thread locked: the
		// kernel detaches it when the thread ends)
		runtime.UnlockOSThread()
	}
	f.t.Close()
	f.t = nil
	if f.OnThaw != nil {
		f.OnThaw(time.Since(f.start))
	}
	return first
}

// release detaches tid, a thread held by Freeze, re-delivering sig.
// PTRACE_DETACH fails with ESRCH when the thread is not in a ptrace stop:
// it was interrupted and has not stopped yet (a Freeze that gave up
// early), or it is exiting. Whichever comes is waited for, at most d: a
// stop, and it is detached (with the signal that stopped it, if one did);
// an exit, and it is collected (as its tracer must, or the thread stays a
// zombie attached to this OS thread).
func release(tid int, sig syscall.Signal, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := Detach(tid, sig)
		if err == nil || !errors.Is(err, unix.ESRCH) {
			return err
		}
		st, perr := Poll(tid)
		switch {
		case perr != nil: // ECHILD: no longer ours
			track(tid, false)
			return nil
		case st.Kind == StopExited:
			track(tid, false)
			return nil
		case st.Kind == StopSignal:
			sig = st.Sig
			continue
		case st.Kind != StopNone:
			continue
		}
		if time.Now().After(deadline) {
			return err
		}
		procfs.Nanosleep(200 * time.Microsecond) // (a Go timer: 1 ms)
	}
}

// Exiting reports whether thread tid of pid is gone or being torn down
// (PF_EXITING, or a zombie): the kernel refuses to seize such a thread.
func Exiting(pid, tid int) bool {
	st, err := procfs.New(pid).TaskStat(tid)
	if err != nil {
		return true
	}
	return procfs.IsZombie(st.State) || st.Flags&procfs.FlagExiting != 0
}
