package ptrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/internal/procfs"
)

// Tracer owns the OS thread that issues every ptrace and wait4 call:
// a goroutine of its own (NewTracer), or the caller's (NewTracerHere).
type Tracer struct {
	reqs chan func()
	here int // NewTracerHere: the caller's thread
}

// ErrWrongThread is returned by a Tracer of NewTracerHere asked from
// another OS thread than its own: only the tracer thread can act on
// its tracees.
var ErrWrongThread = errors.New("ptrace request from another thread than the tracer's")

// NewTracerHere returns a Tracer whose requests run at once on the
// calling goroutine's OS thread, which the caller has locked
// (runtime.LockOSThread) and keeps locked until every tracee is
// detached; every request comes from that goroutine. It saves the
// handoffs to a tracer goroutine and back, each a wake-up of a parked
// thread, which waited for a CPU for up to a scheduler slice (3 ms here)
// when the target kept the other core busy.
func NewTracerHere() *Tracer { return &Tracer{here: unix.Gettid()} }

// NewTracer starts the tracer goroutine. Call Close once every tracee has
// been detached.
func NewTracer() *Tracer {
	t := &Tracer{reqs: make(chan func())}
	started := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(started)
		for f := range t.reqs {
			f()
		}
		// When every tracee was detached the thread goes back to the
		// runtime's pool. Ending it instead would send the parent-death
		// signal to every child the program started from this OS thread
		// with Pdeathsig set (it is per thread, not per process). If a
		// tracee is still attached (a bug), the thread ends with the
		// goroutine and the kernel detaches it.
		if attachedHere() == 0 {
			runtime.UnlockOSThread()
		}
	}()
	<-started
	return t
}

// Do runs f on the tracer thread and returns its error.
func (t *Tracer) Do(f func() error) error {
	if t.here != 0 {
		if tid := unix.Gettid(); tid != t.here {
			return fmt.Errorf("%w (thread %d, tracer %d)", ErrWrongThread, tid, t.here)
		}
		return f()
	}
	ch := make(chan error, 1)
	t.reqs <- func() { ch <- f() }
	return <-ch
}

// Close stops the tracer goroutine (and its OS thread); for a Tracer of
// NewTracerHere it does nothing.
func (t *Tracer) Close() {
	if t.here == 0 {
		close(t.reqs)
	}
}

// ptrace issues one request. addr and data are often addresses of Go
// variables (an iovec, a siginfo): go:uintptrescapes makes the compiler
// put whatever they point at on the heap and keep it alive for the call.
// Without it, a variable on the goroutine's stack moves when the stack
// grows on the way into the system call, and the kernel reads and fills
// the old copy: registers came back zero, and writing them back failed
// half-way with EIO after changing the thread's rip (the kernel sets
// registers one by one, checking each).
//
//go:uintptrescapes
func ptrace(req int, tid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Seize attaches to tid with PTRACE_SEIZE (the thread keeps running) and
// the given PTRACE_O_* options.
func Seize(tid int, options int) error {
	if err := ptrace(unix.PTRACE_SEIZE, tid, 0, uintptr(options)); err != nil {
		return fmt.Errorf("seizing thread %d: %w", tid, err)
	}
	track(tid, true)
	return nil
}

// attached records, per tracer OS thread, the tracees it has seized and
// not yet detached.
var (
	attachedMu sync.Mutex
	attached   = map[int]map[int]bool{}
)

func track(tid int, on bool) {
	me := unix.Gettid()
	attachedMu.Lock()
	defer attachedMu.Unlock()
	m := attached[me]
	if m == nil {
		m = map[int]bool{}
		attached[me] = m
	}
	if on {
		m[tid] = true
	} else {
		delete(m, tid)
	}
}

// attachedHere counts the tracees of the calling OS thread that still
// exist (a tracee that exited is no longer attached).
func attachedHere() int {
	me := unix.Gettid()
	attachedMu.Lock()
	defer attachedMu.Unlock()
	n := 0
	for tid := range attached[me] {
		if procfs.New(tid).Exists() {
			n++
		}
	}
	delete(attached, me)
	return n
}

// Interrupt asks a seized thread to stop (PTRACE_INTERRUPT); Wait then
// reports a StopInterrupt (or whatever stop came first).
func Interrupt(tid int) error {
	if err := ptrace(unix.PTRACE_INTERRUPT, tid, 0, 0); err != nil {
		return fmt.Errorf("interrupting thread %d: %w", tid, err)
	}
	return nil
}

// Cont resumes a stopped thread, delivering sig (0 for none).
func Cont(tid int, sig syscall.Signal) error {
	if err := ptrace(unix.PTRACE_CONT, tid, 0, uintptr(sig)); err != nil {
		return fmt.Errorf("resuming thread %d: %w", tid, err)
	}
	return nil
}

// ContSyscall resumes a stopped thread until its next system-call entry or
// exit (PTRACE_SYSCALL), delivering sig (0 for none).
func ContSyscall(tid int, sig syscall.Signal) error {
	if err := ptrace(unix.PTRACE_SYSCALL, tid, 0, uintptr(sig)); err != nil {
		return fmt.Errorf("resuming thread %d to a syscall: %w", tid, err)
	}
	return nil
}

// Detach releases a stopped thread. sig is delivered only when the thread
// is in a signal-delivery stop (the kernel ignores it otherwise).
func Detach(tid int, sig syscall.Signal) error {
	if err := ptrace(unix.PTRACE_DETACH, tid, 0, uintptr(sig)); err != nil {
		return fmt.Errorf("detaching thread %d: %w", tid, err)
	}
	track(tid, false)
	return nil
}

// StopKind classifies what Wait observed.
type StopKind int

// Kinds of stops and exits reported by Wait.
const (
	StopNone      StopKind = iota // nothing yet (WNOHANG)
	StopInterrupt                 // PTRACE_EVENT_STOP after PTRACE_INTERRUPT
	StopGroup                     // PTRACE_EVENT_STOP for a group-stop (SIGSTOP & co)
	StopSyscall                   // syscall entry or exit (PTRACE_O_TRACESYSGOOD)
	StopSignal                    // signal-delivery stop; Sig is the signal
	StopEvent                     // another PTRACE_EVENT_*; Event says which
	StopExited                    // the thread exited or was killed
)

// Stop is one state change reported by Wait.
type Stop struct {
	Kind  StopKind
	Sig   syscall.Signal // signal for StopSignal/StopGroup, killing signal for StopExited
	Event int
	Code  int // exit code for StopExited
}

func (s Stop) String() string {
	switch s.Kind {
	case StopNone:
		return "no stop"
	case StopInterrupt:
		return "interrupt stop"
	case StopGroup:
		return fmt.Sprintf("group-stop (%v)", s.Sig)
	case StopSyscall:
		return "syscall stop"
	case StopSignal:
		return fmt.Sprintf("signal-delivery stop (%v)", s.Sig)
	case StopEvent:
		return fmt.Sprintf("ptrace event %d", s.Event)
	case StopExited:
		if s.Sig != 0 {
			return fmt.Sprintf("killed by %v", s.Sig)
		}
		return fmt.Sprintf("exited with %d", s.Code)
	}
	return "unknown stop"
}

func decode(ws unix.WaitStatus) Stop {
	raw := uint32(ws)
	switch {
	case ws.Exited():
		return Stop{Kind: StopExited, Code: ws.ExitStatus()}
	case ws.Signaled():
		return Stop{Kind: StopExited, Sig: ws.Signal()}
	case ws.Stopped():
		sig := syscall.Signal((raw >> 8) & 0xff)
		event := int(raw >> 16)
		switch {
		case event == unix.PTRACE_EVENT_STOP:
			switch sig {
			case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
				return Stop{Kind: StopGroup, Sig: sig, Event: event}
			}
			return Stop{Kind: StopInterrupt, Event: event}
		case event != 0:
			return Stop{Kind: StopEvent, Event: event, Sig: sig}
		case sig == unix.SIGTRAP|0x80:
			return Stop{Kind: StopSyscall}
		default:
			return Stop{Kind: StopSignal, Sig: sig}
		}
	}
	return Stop{Kind: StopEvent, Event: -1}
}

// Wait blocks until tid changes state (wait4 with __WALL, retried on EINTR).
func Wait(tid int) (Stop, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Stop{}, fmt.Errorf("waiting for thread %d: %w", tid, err)
		}
		return decode(ws), nil
	}
}

// Poll is Wait with WNOHANG: it returns Stop{Kind: StopNone} at once when
// tid has nothing to report.
func Poll(tid int) (Stop, error) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Stop{}, fmt.Errorf("waiting for thread %d: %w", tid, err)
		}
		if pid == 0 {
			return Stop{Kind: StopNone}, nil
		}
		return decode(ws), nil
	}
}

// ErrTimeout is returned by WaitUntil when the deadline passes first.
var ErrTimeout = errors.New("timed out waiting for thread")

// WaitUntil waits for a state change of tid until deadline (or until
// abort returns true). It polls with WNOHANG so that it can give up:
// for the first 2 ms without sleeping (ptrace stops usually arrive within
// microseconds, and sleeping costs a timer's wake-up), yielding the CPU
// after the first polls (sched_yield: a thread woken to stop needs a CPU,
// and on a 2-core machine with a busy target the poller's was the only
// one: freezes of 1.8-4.5 ms in 8 of 16, none over 0.9 ms with the
// yield), then every 100µs.
func WaitUntil(tid int, deadline time.Time, abort func() bool) (Stop, error) {
	spinUntil := time.Now().Add(2 * time.Millisecond)
	for i := 0; ; i++ {
		st, err := Poll(tid)
		if err != nil || st.Kind != StopNone {
			return st, err
		}
		now := time.Now()
		if now.After(deadline) || (abort != nil && i%64 == 0 && abort()) {
			return Stop{}, fmt.Errorf("thread %d: %w", tid, ErrTimeout)
		}
		if now.After(spinUntil) {
			procfs.Nanosleep(100 * time.Microsecond) // (a Go timer: 1 ms)
		} else if i >= 16 {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
}

// Siginfo returns the raw siginfo of a thread in a signal-delivery stop.
func Siginfo(tid int) (unix.Siginfo, error) {
	var si unix.Siginfo
	if err := ptrace(unix.PTRACE_GETSIGINFO, tid, 0, uintptr(unsafe.Pointer(&si))); err != nil {
		return si, fmt.Errorf("reading siginfo of thread %d: %w", tid, err)
	}
	return si, nil
}

// siTkill is si_code of a signal sent with tkill or tgkill.
const siTkill = -6

// SentByTgkill reports whether si is the siginfo of a signal that process
// pid sent with tgkill (or tkill): code SI_TKILL, si_pid pid.
func SentByTgkill(si *unix.Siginfo, pid int) bool {
	if si.Code != siTkill {
		return false
	}
	// si_pid follows si_signo, si_errno, si_code and 4 bytes of padding
	// (the union's alignment), on every 64-bit Linux.
	raw := (*[24]byte)(unsafe.Pointer(si))
	return int32(binary.NativeEndian.Uint32(raw[16:])) == int32(pid)
}

// SetSiginfo replaces the siginfo of a thread in a signal-delivery stop:
// the signal it is then resumed (or detached) with carries si, when si's
// signal number is that signal's.
func SetSiginfo(tid int, si *unix.Siginfo) error {
	if err := ptrace(unix.PTRACE_SETSIGINFO, tid, 0, uintptr(unsafe.Pointer(si))); err != nil {
		return fmt.Errorf("writing siginfo of thread %d: %w", tid, err)
	}
	return nil
}

func getRegset(tid int, typ int, buf []byte) (int, error) {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	err := ptrace(unix.PTRACE_GETREGSET, tid, uintptr(typ), uintptr(unsafe.Pointer(&iov)))
	runtime.KeepAlive(buf)
	if err != nil {
		return 0, err
	}
	return int(iov.Len), nil
}

func setRegset(tid int, typ int, buf []byte) error {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	err := ptrace(unix.PTRACE_SETREGSET, tid, uintptr(typ), uintptr(unsafe.Pointer(&iov)))
	runtime.KeepAlive(buf)
	return err
}

// State is the complete user register state of a stopped thread.
type State struct {
	Regs Regs   // general registers (NT_PRSTATUS)
	FP   []byte // floating point / vector state, exactly as long as the kernel returned
}

// GetRegs reads the general registers of a stopped thread.
func GetRegs(tid int) (Regs, error) {
	var r Regs
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))
	n, err := getRegset(tid, unix.NT_PRSTATUS, buf)
	if err != nil {
		return r, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	if n != len(buf) {
		return r, fmt.Errorf("reading registers of thread %d: got %d bytes, want %d", tid, n, len(buf))
	}
	if why := badUserRegs(&r); why != "" {
		return r, fmt.Errorf("reading registers of thread %d: %s", tid, why)
	}
	return r, nil
}

// SetRegs writes the general registers of a stopped thread.
func SetRegs(tid int, r Regs) error {
	if why := badUserRegs(&r); why != "" {
		return fmt.Errorf("writing registers of thread %d: refused, %s", tid, why)
	}
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))
	if err := setRegset(tid, unix.NT_PRSTATUS, buf); err != nil {
		if errors.Is(err, unix.EIO) {
			return fmt.Errorf("writing registers of thread %d (%s): %w", tid, regsEIO(&r), err)
		}
		return fmt.Errorf("writing registers of thread %d: %w", tid, err)
	}
	return nil
}

// GetState saves the general and floating-point registers of a stopped thread.
func GetState(tid int) (*State, error) {
	r, err := GetRegs(tid)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 64<<10)
	n, err := getRegset(tid, fpRegset, buf)
	if err != nil {
		return nil, fmt.Errorf("reading FP registers of thread %d: %w", tid, err)
	}
	return &State{Regs: r, FP: buf[:n:n]}, nil
}

// SetState restores registers saved by GetState.
func SetState(tid int, s *State) error {
	if len(s.FP) > 0 {
		if err := setRegset(tid, fpRegset, s.FP); err != nil {
			return fmt.Errorf("writing FP registers of thread %d: %w", tid, err)
		}
	}
	return SetRegs(tid, s.Regs)
}
