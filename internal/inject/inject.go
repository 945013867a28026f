// Package inject runs Python source inside a live CPython process by
// borrowing one of its threads with ptrace just long enough to start a new
// native thread there, which then takes the GIL and runs the source.
//
// The borrowed thread is held for well under a millisecond. While it is
// stopped with its own registers, a bootstrap is written into a code cave
// (the unused tail of an executable file mapping past its ELF segment, see
// cave.go); only then are its registers changed, to run the bootstrap,
// which maps the scratch memory, makes its code page executable and jumps
// to a short chain that calls PyThread_start_new_thread(stub, data) and
// ends with a marker (ready word, then select(1 ms) loops) where the tracer
// restores the thread's registers and detaches. The tracer writes the code
// and data pages between the bootstrap's mmap and mprotect. If pyglass
// dies at any point after the registers were changed, the bootstrap (which
// gives up and unmaps when the data is not marked complete within 200 ms)
// or the chain restores the registers and flags itself and jumps back, so
// the target never runs with borrowed registers. The chain also saves and
// restores the thread's errno around its C calls. The new thread runs
// PyGILState_Ensure, PyRun_SimpleString, PyGILState_Release and then
// tail-calls libc's munmap on the scratch mapping. When no cave is found
// the older setup is used (mmap/mprotect executed through an existing
// syscall instruction with borrowed registers, not safe against a SIGKILL
// of pyglass), and Result.Why says so.
//
// Python 2.7 and 3.6 programs that never started a thread have no GIL yet;
// the chain then initialises threads on the main thread (when it is
// blocked outside the interpreter) or queues a pending call that does it
// (when it is running Python). See Symbols.
package inject

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/target/live"
	"golang.org/x/sys/unix"
)

// Symbols are absolute addresses in the target; 0 means absent.
type Symbols struct {
	PyGILStateEnsure, PyGILStateRelease, PyRunSimpleString, PyThreadStartNewThread uint64

	// Needed only for Python 2.7 and 3.6 targets that may never have
	// started a thread. Legacy handling is on when both
	// PyEvalThreadsInitialized and PyThreadStateCurrent are set.
	PyEvalThreadsInitialized, PyEvalInitThreads, PyEvalRestoreThread, PyEvalSaveThread uint64
	PyInterpreterStateHead, PyInterpreterStateThreadHead, PyAddPendingCall             uint64
	// PyThreadStateCurrent is the address of the _PyThreadState_Current
	// variable (2.7: a pointer; 3.6: a _Py_atomic_address), not a function.
	PyThreadStateCurrent uint64

	// Munmap is libc's munmap; when 0 the scratch mapping is left behind.
	Munmap uint64
	// ErrnoLocation is libc's __errno_location; when set, the chain saves
	// the borrowed thread's errno before its C calls and restores it.
	ErrnoLocation uint64
	// PthreadCreate, PthreadDetach, PthreadAttrInit and
	// PthreadAttrSetstacksize are the C library's (libc, or libpthread
	// before glibc 2.34). When all are set the chain starts the thread
	// with them: PyThread_start_new_thread allocates with
	// PyMem_RawMalloc, whose tracemalloc hook takes a lock that the
	// borrowed thread may hold (stopped inside that hook), a deadlock.
	PthreadCreate, PthreadDetach, PthreadAttrInit, PthreadAttrSetstacksize uint64

	// InterpreterText lists [start,end) of the executable mappings of the
	// python executable and libpython. A thread not blocked in a syscall
	// is borrowed only when stopped with its PC in one of them.
	InterpreterText [][2]uint64
}

func (s *Symbols) legacy() bool {
	return s.PyEvalThreadsInitialized != 0 && s.PyThreadStateCurrent != 0
}

func (s *Symbols) legacyComplete() bool {
	return s.PyEvalInitThreads != 0 && s.PyEvalRestoreThread != 0 && s.PyEvalSaveThread != 0 &&
		s.PyInterpreterStateHead != 0 && s.PyInterpreterStateThreadHead != 0 && s.PyAddPendingCall != 0
}

// Options tune StartThread.
type Options struct {
	// Timeout bounds the whole operation (default 5 s). A borrowed thread
	// is never abandoned in a broken state: past the timeout it is left to
	// finish the chain and restore itself.
	Timeout time.Duration
	// AvoidEINTR refuses to borrow a thread blocked in a syscall that
	// fails with EINTR when stopped (epoll_wait, sigtimedwait, ...). Set
	// it for Python 2, which does not retry such calls.
	AvoidEINTR bool
	// Log receives progress messages (may be nil).
	Log func(string)
}

// Result describes what StartThread did.
type Result struct {
	Thread   int           // tid of the borrowed thread
	Why      string        // why that thread was chosen
	Strategy string        // new-thread, init-threads+new-thread or pending-call
	Held     time.Duration // how long the borrowed thread was held
	Wall     time.Duration // whole StartThread duration
	Attempts int           // threads tried before one was accepted
	Scratch  uint64        // start of the scratch mapping
	Len      uint64        // its length
	// Leaked is true when the scratch mapping will not be freed (no
	// munmap symbol, or the thread restored itself).
	Leaked bool
	// Signals counts the signals that came for the borrowed thread while
	// it was held: each was delivered once it was given back, and
	// SiginfoKept of them with the siginfo they came with.
	Signals, SiginfoKept int
}

// Errors returned (wrapped) by StartThread.
var (
	ErrPermission = ptrace.ErrPermission // ptrace denied; the message says why
	ErrGone       = procfs.ErrNoProcess  // the target exited
	ErrNoThread   = errors.New("no thread safe to borrow")
	ErrTimeout    = errors.New("timed out")
	ErrStopped    = errors.New("target is stopped (SIGSTOP); continue it first")
	ErrFailed     = errors.New("injected call failed")
)

const maxSource = 4 << 20

// testHookAbandon, when set by a test and returning true for a step, makes
// the tracer let go of the thread at that step (detach without restoring
// anything), as if pyglass had been killed there. Steps: "boot" (registers
// just set to the cave bootstrap), "mmap-entry", "mmap-exit",
// "written" (code and data written, go not yet set), "go",
// "mprotect-entry", "mprotect-exit", "chain" (about to resume in the chain),
// and "gate" (the gate just opened, no thread held: StartThread returns
// with it open).
var testHookAbandon func(pid int, step string) bool

// testHookDeliver, when set by a test, is called by deliverHeld once it
// has sent the held signals again, before the thread runs: a signal the
// test sends then comes "meanwhile", queued with them.
var testHookDeliver func(pid, tid int)

// testHookBreakChain, when set by a test and returning true for a pid,
// makes the chain's first instruction one that faults.
var testHookBreakChain func(pid int) bool

// breakChain applies testHookBreakChain to the code about to be written.
func (j *job) breakChain(code []byte, ca codeAddrs) {
	if testHookBreakChain == nil || !testHookBreakChain(j.pid) {
		return
	}
	copy(code[ca.chain-j.base:], faultInstr)
}

// testHookNoCave makes StartThread behave as if no code cave existed.
var testHookNoCave bool

// StartThread runs src (Python source, UTF-8, no NUL) on a new thread
// inside pid. It returns once the thread has been created and the borrowed
// thread is restored and detached; it does not wait for the Python code.
func StartThread(pid int, syms Symbols, src []byte, opt Options) (Result, error) {
	return StartThreadContext(context.Background(), pid, syms, src, opt)
}

// StartThreadContext is StartThread with cancellation: cancelling ctx
// (e.g. from a SIGINT handler) ends the attempt early, but a thread that
// is held is always restored and detached first.
func StartThreadContext(ctx context.Context, pid int, syms Symbols, src []byte, opt Options) (Result, error) {
	t0 := time.Now()
	j := &job{ctx: ctx, pid: pid, syms: syms, src: src, opt: opt}
	if j.opt.Timeout <= 0 {
		j.opt.Timeout = 5 * time.Second
	}
	j.deadline = t0.Add(j.opt.Timeout)
	res, err := j.run()
	res.Wall = time.Since(t0)
	if err != nil {
		return res, fmt.Errorf("injecting into %d: %w", pid, err)
	}
	return res, nil
}

type job struct {
	ctx      context.Context
	pid      int
	syms     Symbols
	src      []byte
	opt      Options
	deadline time.Time
	mem      *live.Process
	res      Result

	// the held thread
	tid   int
	saved *ptrace.State
	// restartEINTR: no signal with a handler was pending when the thread
	// was taken, so a call the stop ended with EINTR is run again when
	// it is given back (restoredRegs).
	restartEINTR bool
	heldAt       time.Time
	touched      bool   // registers changed / thread resumed since the interrupt stop
	gadget       uint64 // a syscall instruction
	sigs         []heldSignal
	base         uint64 // scratch mapping, 0 until mapped
	size         uint64
	data         uint64
	ca           codeAddrs
	inChain      bool // the thread runs the chain (it can restore itself)
	released     bool

	page      uint64
	cave      *cave            // nil: legacy setup through the gadget
	inBoot    bool             // the thread runs the cave bootstrap (it can restore itself)
	caveDirty bool             // the bootstrap is in the cave
	caveFree  bool             // the thread is known to be out of the cave for good
	stopped   bool             // the thread is in a ptrace stop
	goSet     bool             // dGo = 1 written
	avoid     [][2]uint64      // code of earlier injections (pyglassCode)
	maps      []procfs.Mapping // the mappings when the job started (stackRoom)

	outside map[int]uint64 // threads last seen running outside the interpreter: their pc
	gate    *gate          // open while a busy thread is awaited (gate.go)
}

func (j *job) logf(format string, args ...any) {
	if j.opt.Log != nil {
		j.opt.Log(fmt.Sprintf(format, args...))
	}
}

func (j *job) expired() bool {
	return time.Now().After(j.deadline) || j.ctx.Err() != nil
}

func (j *job) validate() error {
	s := &j.syms
	if s.PyThreadStartNewThread == 0 || s.PyGILStateEnsure == 0 || s.PyGILStateRelease == 0 || s.PyRunSimpleString == 0 {
		return errors.New("missing symbols: PyThread_start_new_thread, PyGILState_Ensure, PyGILState_Release and PyRun_SimpleString are required")
	}
	if strings.IndexByte(string(j.src), 0) >= 0 {
		return errors.New("source contains a NUL byte")
	}
	if len(j.src) > maxSource {
		return fmt.Errorf("source is %d bytes (limit %d)", len(j.src), maxSource)
	}
	st, err := procfs.New(j.pid).Status()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrGone, err)
	}
	switch st.State {
	case 'T':
		return ErrStopped
	case 't':
		return fmt.Errorf("%w: process %d is stopped by its tracer (pid %d)", ErrPermission, j.pid, st.TracerPid)
	case 'Z', 'X':
		return fmt.Errorf("%w: process %d is a zombie", ErrGone, j.pid)
	}
	if f := st.ThreadFeatures; shadowStackEnabled(f) {
		return errors.New("target uses shadow stacks (x86_Thread_features: " + f + "), not supported")
	}
	return nil
}

func (j *job) run() (Result, error) {
	if err := j.validate(); err != nil {
		return j.res, err
	}
	var err error
	if j.mem, err = live.Open(j.pid); err != nil {
		return j.res, fmt.Errorf("%w: %v", ErrGone, err)
	}
	defer j.mem.Close()
	j.page = uint64(os.Getpagesize())
	j.size = j.page + (j.fpOffset()+fpReserve+j.page-1)/j.page*j.page
	// The mappings, read once: the caves, the code of earlier injections
	// and the threads' stack room are found in them.
	if j.maps, err = procfs.New(j.pid).Maps(); err != nil {
		return j.res, err
	}
	if !testHookNoCave {
		// The cave does not depend on the thread: look for it before one
		// is held.
		var zero ptrace.Regs
		var bc bootCode
		bc, err = genBoot(0, j.size, j.page, &zero)
		if err != nil {
			return j.res, err
		}
		j.cave = findCave(j.mem, j.pid, j.maps, uint64(len(bc.code))+8, j.syms.InterpreterText, nil, j.page)
	}
	defer j.restoreCave()
	j.avoid = pyglassCode(j.mem, j.maps, j.page)
	defer j.closeGate()
	tr := ptrace.NewTracer()
	defer tr.Close()
	err = tr.Do(func() error {
		if err := j.pick(); err != nil {
			return err
		}
		err := j.hijack()
		if rerr := j.release(); rerr != nil && err == nil {
			err = rerr
		}
		return err
	})
	return j.res, err
}

// ---- choosing and holding a thread ----

type candidate struct {
	tid int
	why string
}

func (j *job) candidates() (blocked, other []candidate, err error) {
	p := procfs.New(j.pid)
	tids, err := p.TaskIDs()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrGone, err)
	}
	preferMain := j.syms.legacy()
	for _, tid := range tids {
		sc, err := p.TaskSyscall(tid)
		if err != nil {
			continue // thread exited, or not readable
		}
		if sc.InSyscall {
			if name, bad := forbiddenSyscalls[int(sc.Nr)]; bad {
				j.logf("thread %d: skipped, in %s", tid, name)
				continue
			}
			if name, bad := ptrace.EINTRSyscalls[int(sc.Nr)]; bad {
				if j.opt.AvoidEINTR {
					j.logf("thread %d: skipped, in %s (would see EINTR)", tid, name)
					continue
				}
				other = append(other, candidate{tid, fmt.Sprintf("blocked in syscall %d (%s, retried by Python 3 on EINTR)", sc.Nr, name)})
				continue
			}
			c := candidate{tid, fmt.Sprintf("blocked in syscall %d", sc.Nr)}
			if preferMain && tid == j.pid {
				blocked = append([]candidate{c}, blocked...)
			} else {
				blocked = append(blocked, c)
			}
			continue
		}
		c := candidate{tid, "running"}
		if preferMain && tid == j.pid {
			other = append([]candidate{c}, other...)
		} else {
			other = append(other, c)
		}
	}
	// EINTR-prone blocked threads go after running ones.
	var run, eintr []candidate
	for _, c := range other {
		if c.why == "running" {
			run = append(run, c)
		} else {
			eintr = append(eintr, c)
		}
	}
	return blocked, append(run, eintr...), nil
}

// pick holds the first thread found at a safe place. Until the deadline
// it keeps looking, releasing every thread between rounds and sleeping a
// little longer each time (1 ms up to 10 ms). A thread busy in C code
// outside the interpreter is never borrowed there; when no thread is safe
// after the first rounds, the gate (gate.go) is opened so that a thread
// leaving its C code parks in a system call where it can be borrowed.
func (j *job) pick() error {
	var lastWhy string
	sleep := time.Millisecond
	for round := 0; ; round++ {
		if j.expired() {
			return j.noThreadError(round, lastWhy)
		}
		blocked, other, err := j.candidates()
		if err != nil {
			return err
		}
		for _, c := range append(blocked, other...) {
			if c.why == "running" && j.gate != nil && round%10 != 0 {
				// The gate is open: a thread leaving its C code shows up
				// blocked in it; running threads are sampled less often.
				continue
			}
			j.res.Attempts++
			ok, why, err := j.tryHold(c)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			lastWhy = fmt.Sprintf("thread %d %s", c.tid, why)
			j.logf("%s", lastWhy)
		}
		if round == gateAfterRounds {
			j.openGate()
			if j.gate != nil && testHookAbandon != nil && testHookAbandon(j.pid, "gate") {
				j.gate = nil // as if pyglass had been killed with the gate open
				return errors.New("test: abandoned with the gate open")
			}
		}
		d := min(sleep, time.Until(j.deadline))
		if d > 0 {
			time.Sleep(d)
		}
		sleep = min(sleep*3/2, 10*time.Millisecond)
	}
}

// noThreadError explains, at the deadline, why no thread could be
// borrowed: it names the threads last seen busy outside the interpreter
// and the file their code is in.
func (j *job) noThreadError(rounds int, lastWhy string) error {
	var busy []string
	for _, tid := range sortedTids(j.outside) {
		pc := j.outside[tid]
		where := "anonymous memory"
		for _, m := range j.maps {
			if m.Contains(pc) && m.Path != "" {
				where = m.Path
				break
			}
		}
		busy = append(busy, fmt.Sprintf("thread %d runs C code in %s (pc %#x)", tid, where, pc))
	}
	if len(busy) > 0 {
		who := "it"
		if len(busy) > 1 {
			who = "one of them"
		}
		return fmt.Errorf("%w after %s (%d rounds), %w: %s: pyglass waits for %s to call into Python; try again, or raise --timeout",
			ErrTimeout, j.opt.Timeout.Round(time.Millisecond), rounds, ErrNoThread, strings.Join(busy, "; "), who)
	}
	if lastWhy == "" {
		lastWhy = "no thread found"
	}
	return fmt.Errorf("%w after %s (%d rounds), %w; last: %s", ErrTimeout, j.opt.Timeout.Round(time.Millisecond), rounds, ErrNoThread, lastWhy)
}

// threadStack is the stack size of the thread the chain starts with
// pthread_create (the default of glibc under the usual 8 MiB stack
// limit; musl's default, 128 KiB, is too small for Python code).
const threadStack = 8 << 20

// minStackRoom is how much stack the chain's C calls may use below a
// borrowed thread's stack pointer (pthread_create, the interpreter's
// calls: a few KiB, with a wide margin). A thread with less is not
// borrowed: the calls would run into its guard page and crash the
// process. A variable for tests.
var minStackRoom uint64 = 32 << 10

// stackRoom returns how many bytes of the mapping holding sp lie below
// it, and false when that is unknown or unbounded: sp in none of maps (a
// thread started since they were read) or in the main thread's [stack],
// which the kernel grows on demand.
func stackRoom(maps []procfs.Mapping, sp uint64) (uint64, bool) {
	for _, m := range maps {
		if m.Start <= sp && sp < m.End {
			if m.Path == "[stack]" {
				return 0, false
			}
			return sp - m.Start, true
		}
	}
	return 0, false
}

func sortedTids(m map[int]uint64) []int {
	var out []int
	for tid := range m {
		out = append(out, tid)
	}
	sort.Ints(out)
	return out
}

// tryHold seizes and interrupts c.tid and keeps it if it stopped at a
// safe place. It returns (false, reason, nil) when the thread was released
// again, and an error only for conditions that end the attempt.
func (j *job) tryHold(c candidate) (bool, string, error) {
	if err := ptrace.Seize(c.tid, unix.PTRACE_O_TRACESYSGOOD); err != nil {
		// A thread being torn down (an injected thread that just ended,
		// say) is refused with EPERM, not ESRCH.
		if c.tid != j.pid && (errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EPERM) && ptrace.Exiting(j.pid, c.tid)) {
			return false, "exited", nil
		}
		return false, "", ptrace.ExplainAttachError(j.pid, err)
	}
	if err := ptrace.Interrupt(c.tid); err != nil {
		return false, "", ptrace.ExplainAttachError(j.pid, err)
	}
	st, err := ptrace.WaitUntil(c.tid, time.Now().Add(2*time.Second), nil)
	if err != nil {
		// Uninterruptible sleep for 2 s: the tracer thread's exit will
		// detach it; give up on this target.
		return false, "", fmt.Errorf("stopping thread %d: %w", c.tid, err)
	}
	switch st.Kind {
	case ptrace.StopInterrupt:
	case ptrace.StopSignal:
		// A signal was on its way: let the thread have it now.
		ptrace.Detach(c.tid, st.Sig)
		return false, "had a signal (" + st.Sig.String() + ") pending", nil
	case ptrace.StopGroup:
		ptrace.Detach(c.tid, 0)
		return false, "", ErrStopped
	case ptrace.StopExited:
		if c.tid == j.pid {
			return false, "", fmt.Errorf("%w: %v", ErrGone, st)
		}
		return false, "exited", nil
	default:
		ptrace.Detach(c.tid, 0)
		return false, "stopped unexpectedly (" + st.String() + ")", nil
	}
	t0 := time.Now()
	saved, err := ptrace.GetState(c.tid)
	if err != nil {
		ptrace.Detach(c.tid, 0)
		return false, "", err
	}
	regs := &saved.Regs
	accept, why := false, ""
	delete(j.outside, c.tid)
	if j.inGate(regs.PC()) {
		accept = true
		why = fmt.Sprintf("left its C code: waiting in pyglass's gate at the entry of PyEval_RestoreThread (pc %#x)", regs.PC())
	} else if j.inPyglassCode(regs.PC()) {
		why = fmt.Sprintf("stopped at %#x, in the code of an earlier injection restoring itself", regs.PC())
	} else if nr, ok := inSyscall(regs, j.mem); ok {
		if name, bad := forbiddenSyscalls[nr]; bad {
			why = "stopped in " + name
		} else if name, bad := ptrace.EINTRSyscalls[nr]; bad && j.opt.AvoidEINTR {
			why = "stopped in " + name
		} else {
			accept = true
			why = fmt.Sprintf("%s; stopped at syscall %d boundary", c.why, nr)
		}
	} else if j.inInterpreter(regs.PC()) {
		accept = true
		why = fmt.Sprintf("%s; stopped in interpreter code at %#x", c.why, regs.PC())
	} else {
		why = fmt.Sprintf("stopped at %#x, outside the interpreter", regs.PC())
		if j.outside == nil {
			j.outside = map[int]uint64{}
		}
		j.outside[c.tid] = regs.PC()
	}
	if room, known := stackRoom(j.maps, regs.SP()); accept && known && room < minStackRoom {
		accept = false
		why = fmt.Sprintf("only %d KiB of stack left below its stack pointer %#x (the calls need %d KiB)", room>>10, regs.SP(), minStackRoom>>10)
	}
	if !accept {
		// Registers untouched: a restartable call restarts. One that
		// the interrupt ended with EINTR (epoll_wait...: a thread that
		// entered it after the look at /proc skipped such threads) is
		// made to restart too, unless a signal with a handler came
		// meanwhile.
		ptrace.RewindEINTR(c.tid)
		ptrace.Detach(c.tid, 0)
		return false, why, nil
	}
	j.tid, j.saved, j.heldAt = c.tid, saved, t0
	j.restartEINTR = false
	if st, err := procfs.New(j.pid).TaskStatus(c.tid); err == nil {
		j.restartEINTR = !st.CaughtSignalPending()
	}
	j.res.Thread, j.res.Why = c.tid, why
	j.logf("borrowing thread %d: %s", c.tid, why)
	return true, "", nil
}

func (j *job) inPyglassCode(pc uint64) bool {
	for _, r := range j.avoid {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

func (j *job) inInterpreter(pc uint64) bool {
	for _, r := range j.syms.InterpreterText {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

// ---- running code on the held thread ----

// awaitReady resumes the thread in the chain and polls the ready word,
// holding signals that arrive meanwhile.
func (j *job) awaitReady() error {
	j.touched, j.stopped = true, false
	if err := ptrace.Cont(j.tid, 0); err != nil {
		return j.gone(err)
	}
	spinUntil := time.Now().Add(2 * time.Millisecond)
	var word [4]byte
	for i := 0; ; i++ {
		st, err := ptrace.Poll(j.tid)
		if err != nil {
			return j.gone(err)
		}
		switch st.Kind {
		case ptrace.StopNone:
		case ptrace.StopExited:
			j.released = true
			return fmt.Errorf("%w: thread %d %v", ErrGone, j.tid, st)
		case ptrace.StopSignal:
			if err := j.faulted(st); err != nil {
				return err
			}
			j.hold(st.Sig)
			fallthrough
		default:
			if err := ptrace.Cont(j.tid, 0); err != nil {
				return j.gone(err)
			}
		}
		if st.Kind == ptrace.StopNone {
			if _, err := j.mem.ReadAt(word[:], j.data+dReady); err != nil {
				return err
			}
			if binary.LittleEndian.Uint32(word[:]) != 0 {
				return nil
			}
		}
		// Checked after every stop too: signals arriving without end
		// must not keep the loop from its deadline.
		now := time.Now()
		if now.After(j.deadline) || j.ctx.Err() != nil {
			return ErrTimeout
		}
		if now.After(spinUntil) {
			procfs.Nanosleep(100 * time.Microsecond) // (a Go timer: 1 ms)
		}
	}
}

// stopInChain interrupts the thread waiting at the end of the chain. If
// it already left the code page (it restored itself because we were too
// late), it is detached as it is.
func (j *job) stopInChain() error {
	if err := ptrace.Interrupt(j.tid); err != nil {
		return j.gone(err)
	}
	for i := 0; i < 1000; i++ {
		st, err := ptrace.WaitUntil(j.tid, time.Now().Add(5*time.Second), nil)
		if err != nil {
			return err
		}
		switch st.Kind {
		case ptrace.StopExited:
			j.released = true
			return fmt.Errorf("%w: thread %d %v", ErrGone, j.tid, st)
		case ptrace.StopSignal:
			if err := j.faulted(st); err != nil {
				return err
			}
			j.hold(st.Sig)
			if err := ptrace.Cont(j.tid, 0); err != nil {
				return j.gone(err)
			}
			continue
		case ptrace.StopInterrupt, ptrace.StopGroup:
		default:
			if err := ptrace.Cont(j.tid, 0); err != nil {
				return j.gone(err)
			}
			continue
		}
		j.stopped = true
		r, err := ptrace.GetRegs(j.tid)
		if err != nil {
			return j.gone(err)
		}
		j.inChain = false
		if pc := r.PC(); pc < j.ca.code || pc >= j.ca.codeEnd {
			j.logf("thread %d had restored itself (pc %#x)", j.tid, pc)
			j.res.Leaked = true
			j.caveFree = true
			j.released = true
			err := ptrace.Detach(j.tid, 0)
			j.resend()
			j.res.Held = time.Since(j.heldAt)
			return err
		}
		return nil
	}
	return errors.New("too many stops")
}

// resume continues the held thread to its next syscall stop, holding
// signals that arrive meanwhile. wait bounds the wait.
func (j *job) toSyscallStop(deadline time.Time, abort func() bool) error {
	j.touched = true
	for i := 0; i < 10000; i++ {
		j.stopped = false
		if err := ptrace.ContSyscall(j.tid, 0); err != nil {
			return j.gone(err)
		}
		st, err := ptrace.WaitUntil(j.tid, deadline, abort)
		if err != nil {
			return err
		}
		j.stopped = st.Kind != ptrace.StopExited
		switch st.Kind {
		case ptrace.StopSyscall:
			return nil
		case ptrace.StopSignal:
			if err := j.faulted(st); err != nil {
				return err
			}
			j.hold(st.Sig)
		case ptrace.StopExited:
			j.released = true
			return fmt.Errorf("%w: thread %d %v", ErrGone, j.tid, st)
		}
		// interrupt/group stops: keep going (a group stop is re-entered
		// by the kernel after detach).
	}
	return errors.New("too many stops")
}

// heldSignal is a signal that arrived for the borrowed thread while it
// was held, and its siginfo (infoOK: read at its signal-delivery stop).
type heldSignal struct {
	sig    syscall.Signal
	info   unix.Siginfo
	infoOK bool
}

// hold keeps a signal that arrived for the borrowed thread (stopped in
// its signal-delivery stop), with its siginfo, to deliver it once the
// thread is back in its own code (deliverHeld). A standard signal pending
// twice is delivered once: it is kept once.
func (j *job) hold(sig syscall.Signal) {
	j.logf("holding %v that arrived for thread %d", sig, j.tid)
	if sig < 32 && slices.ContainsFunc(j.sigs, func(h heldSignal) bool { return h.sig == sig }) {
		return
	}
	h := heldSignal{sig: sig}
	if si, err := ptrace.Siginfo(j.tid); err == nil && si.Signo == int32(sig) {
		h.info, h.infoOK = si, true
	}
	j.sigs = append(j.sigs, h)
	j.res.Signals++
}

// deliverWait bounds how long deliverHeld waits for the thread to take
// the signals it sent again.
const deliverWait = 100 * time.Millisecond

// deliverHeld delivers the held signals to the thread, given back its
// registers and still stopped, with the siginfo they came with: the
// kernel lets no other process send a signal with a siginfo it did not
// make (a SIGCHLD's child and status, a POSIX timer's value), so each is
// sent again (tgkill) and, at its signal-delivery stop, given its saved
// siginfo (PTRACE_SETSIGINFO); the last one is delivered by the detach.
// At the first of those stops the thread has run nothing yet: for a
// signal with a handler it is given the registers its system call was
// stopped with, so that the kernel restarts the call or fails it with
// EINTR as the handler's SA_RESTART says, as if the signal had come then
// (restoredRegs restarts it, right for a signal without a handler).
//
// It returns true when it detached the thread (or the thread exited).
// Otherwise the thread is stopped and still traced, and the held signals
// left in j.sigs (without siginfo, blocked by the thread, or come
// meanwhile) are for the caller to send after detaching it; those sent
// here are pending in the kernel or delivered already.
func (j *job) deliverHeld() bool {
	st, err := procfs.New(j.pid).TaskStatus(j.tid)
	if err != nil {
		return false
	}
	var pending, rest []heldSignal
	for _, h := range j.sigs {
		if h.infoOK && !st.Blocks(h.sig) {
			pending = append(pending, h)
		} else {
			rest = append(rest, h)
		}
	}
	if len(pending) == 0 {
		return false
	}
	j.sigs = rest
	for i, h := range pending {
		if err := unix.Tgkill(j.pid, j.tid, h.sig); err != nil {
			j.logf("re-sending %v to thread %d: %v", h.sig, j.tid, err)
			j.sigs = append(j.sigs, pending[i:]...)
			pending = pending[:i]
			break
		}
	}
	if len(pending) == 0 {
		return false
	}
	if testHookDeliver != nil {
		testHookDeliver(j.pid, j.tid)
	}
	first, interrupted := true, false
	deadline := time.Now().Add(deliverWait)
	resume := syscall.Signal(0)
	for n := 0; n < 1000; n++ {
		if err := ptrace.Cont(j.tid, resume); err != nil {
			j.released = errors.Is(err, unix.ESRCH)
			return j.released
		}
		resume = 0
		if interrupted {
			deadline = time.Now().Add(time.Second)
		}
		stop, err := ptrace.WaitUntil(j.tid, deadline, nil)
		if err != nil && !interrupted {
			// The thread runs its own code, traced (a handler that
			// blocks the next signal): stop it, and leave what is
			// still pending for after the detach.
			interrupted = true
			if ptrace.Interrupt(j.tid) == nil {
				stop, err = ptrace.WaitUntil(j.tid, time.Now().Add(time.Second), nil)
			}
		}
		if err != nil {
			j.logf("thread %d did not stop to be given its held signals: %v", j.tid, err)
			return false
		}
		switch stop.Kind {
		case ptrace.StopExited:
			j.released = true
			return true
		case ptrace.StopSignal:
			sig := stop.Sig
			// One sent again (by this process, with tgkill; sent by
			// pid 0 for a target in another PID namespace, which does
			// not see this process): given back its siginfo. Another
			// one, come meanwhile, has its own and is delivered as it
			// is; it may be of the same signal (a real-time one,
			// queued before the one sent again).
			k := -1
			if si, err := ptrace.Siginfo(j.tid); err == nil && (ptrace.SentByTgkill(&si, os.Getpid()) || ptrace.SentByTgkill(&si, 0)) {
				k = slices.IndexFunc(pending, func(h heldSignal) bool { return h.sig == sig })
			}
			if k >= 0 {
				h := pending[k]
				pending = slices.Delete(pending, k, k+1)
				if err := ptrace.SetSiginfo(j.tid, &h.info); err == nil {
					j.res.SiginfoKept++
				}
			}
			if first && st.Catches(sig) {
				if err := ptrace.SetRegs(j.tid, j.saved.Regs); err != nil {
					j.logf("giving thread %d its stopped system call back: %v", j.tid, err)
				}
			}
			// Past the first delivery the registers are the kernel's
			// (a handler's frame): never set again.
			first = false
			if len(pending) == 0 || interrupted {
				if err := ptrace.Detach(j.tid, sig); err != nil {
					j.logf("delivering %v to thread %d: %v", sig, j.tid, err)
				}
				return true
			}
			resume = sig
		case ptrace.StopGroup:
			return false // stopped by a signal: after the detach too
		default:
			if interrupted {
				return false
			}
		}
	}
	if resume != 0 {
		ptrace.Detach(j.tid, resume)
		return true
	}
	return false
}

// faultSignals are the signals the kernel sends a thread for the
// instruction it runs.
var faultSignals = map[syscall.Signal]bool{unix.SIGSEGV: true, unix.SIGBUS: true, unix.SIGILL: true, unix.SIGFPE: true}

// faulted returns an error when the thread, stopped for a signal, is
// stopped because an instruction of pyglass's code faulted (a kernel
// signal, not one sent). Resuming it, even with the signal suppressed,
// would run the instruction again without end; detaching it would let
// the fault kill the target. The thread is left stopped and counted as
// no longer in the bootstrap or the chain, so that release gives it back
// its own registers and the fault is never delivered.
func (j *job) faulted(st ptrace.Stop) error {
	if !faultSignals[st.Sig] {
		return nil
	}
	si, err := ptrace.Siginfo(j.tid)
	if err != nil || si.Code <= 0 { // SI_USER, SI_TKILL, SI_QUEUE: sent
		return nil
	}
	j.stopped = true
	j.inBoot, j.inChain = false, false
	pc := uint64(0)
	if r, err := ptrace.GetRegs(j.tid); err == nil {
		pc = r.PC()
	}
	return fmt.Errorf("pyglass's code faulted in thread %d (%v, code %d, pc %#x); the thread is given back its registers", j.tid, st.Sig, si.Code, pc)
}

func (j *job) gone(err error) error {
	if errors.Is(err, unix.ESRCH) {
		j.released = true
		return fmt.Errorf("%w: %v", ErrGone, err)
	}
	return err
}

// rsys executes one syscall on the held thread through the gadget.
func (j *job) rsys(nr uint64, args ...uint64) (uint64, error) {
	r := syscallRegs(j.saved.Regs, j.gadget, nr, args...)
	if err := ptrace.SetRegs(j.tid, r); err != nil {
		return 0, j.gone(err)
	}
	hard := time.Now().Add(5 * time.Second) // mmap/mprotect/munmap do not block
	for stop := 0; stop < 2; stop++ {       // entry, then exit
		if err := j.toSyscallStop(hard, nil); err != nil {
			return 0, fmt.Errorf("executing syscall %d: %w", nr, err)
		}
		got, err := ptrace.GetRegs(j.tid)
		if err != nil {
			return 0, j.gone(err)
		}
		if got.PC() != syscallPC(j.gadget) {
			return 0, fmt.Errorf("executing syscall %d: thread stopped at %#x, not at the gadget", nr, got.PC())
		}
		if stop == 1 {
			return syscallResult(&got), nil
		}
	}
	panic("unreachable")
}

func (j *job) findGadget() error {
	if g := syscallGadgetHere(&j.saved.Regs); g != 0 && gadgetAlign == 1 {
		b := make([]byte, len(ptrace.SyscallInstr))
		if _, err := j.mem.ReadAt(b, g); err == nil && string(b) == string(ptrace.SyscallInstr) {
			j.gadget = g
			return nil
		}
	}
	g, err := findSyscallInstr(j.mem, j.maps, j.syms.InterpreterText, j.saved.Regs.PC())
	if err != nil {
		return err
	}
	j.gadget = g
	return nil
}

func (j *job) hijack() error {
	if j.cave != nil {
		j.res.Why += fmt.Sprintf("; set up from a code cave at %#x (%s)", j.cave.addr, j.cave.file)
		if err := j.hijackCave(); err != nil || j.released {
			return err
		}
		return j.runChain()
	}
	j.res.Why += "; no code cave large enough: set up by raw syscalls on the thread (not safe if pyglass is killed meanwhile)"
	j.logf("no code cave found: setting up through a syscall instruction")
	if err := j.findGadget(); err != nil {
		return err
	}
	page, size := j.page, j.size
	addr, err := j.rsys(sysMmap, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("mapping scratch memory: %w", err)
	}
	if int64(addr) < 0 && int64(addr) > -4096 {
		return fmt.Errorf("mapping scratch memory in the target: %v", syscall.Errno(-int64(addr)))
	}
	j.base, j.size, j.data = addr, size, addr+page
	j.res.Scratch, j.res.Len = addr, size

	code, ca, err := genCode(j.base, j.data)
	if err != nil {
		return err
	}
	if uint64(len(code)) > page {
		return fmt.Errorf("machine code is %d bytes, more than a page", len(code))
	}
	j.ca = ca
	j.breakChain(code, ca)
	final := restoredRegs(j.saved.Regs, j.restartEINTR)
	data := j.dataPage(final)
	if err := j.mem.WriteForced(code, j.base); err != nil {
		return err
	}
	if err := j.mem.WriteForced(data, j.data); err != nil {
		return err
	}
	if r, err := j.rsys(sysMprotect, j.base, page, unix.PROT_READ|unix.PROT_EXEC); err != nil || r != 0 {
		if err == nil {
			err = syscall.Errno(-int64(r))
		}
		return fmt.Errorf("making scratch code executable: %w", err)
	}

	if err := ptrace.SetRegs(j.tid, callRegs(j.saved.Regs, ca.chain)); err != nil {
		return j.gone(err)
	}
	j.inChain = true
	return j.runChain()
}

// runChain lets the thread (sent into the chain) run it with PTRACE_CONT
// (no stop at the syscalls of pthread_create) until it reports ready,
// then stops it and reads the result.
func (j *job) runChain() error {
	if j.abandon("chain") {
		return nil
	}
	if err := j.awaitReady(); err != nil {
		if errors.Is(err, ErrTimeout) {
			// Where the thread is says why (a lock in the thread
			// library, the kernel): stop it (release would) and look.
			err = fmt.Errorf("%w; %s", err, j.whereStuck())
		}
		return fmt.Errorf("running the call: %w", err)
	}
	j.caveFree = true // the chain is in the scratch page, the cave is behind
	if err := j.stopInChain(); err != nil {
		return fmt.Errorf("taking the thread back: %w", err)
	}
	if j.released {
		return nil // it had restored itself already
	}
	j.inChain = false
	var slots [16]byte
	if _, err := j.mem.ReadAt(slots[:], j.data+dResult); err != nil {
		return err
	}
	var via [8]byte
	if _, err := j.mem.ReadAt(via[:], j.data+dViaPthread); err != nil {
		return err
	}
	result := int64(binary.LittleEndian.Uint64(slots[0:]))
	path := binary.LittleEndian.Uint64(slots[8:])
	j.res.Strategy = pathNames[path]
	switch {
	case (path == pathStarted || path == pathInitStart) && binary.LittleEndian.Uint64(via[:]) == 1:
		if result != 0 {
			return fmt.Errorf("%w: pthread_create returned %d (%v)", ErrFailed, result, unix.Errno(result))
		}
	case path == pathStarted || path == pathInitStart:
		if result == -1 {
			return fmt.Errorf("%w: PyThread_start_new_thread returned -1", ErrFailed)
		}
	case path == pathPending:
		if result != 0 {
			return fmt.Errorf("%w: Py_AddPendingCall returned %d (queue full or busy)", ErrFailed, result)
		}
	case path == pathNoThreads:
		return fmt.Errorf("%w: the program never started a thread and its main thread could not be borrowed", ErrFailed)
	default:
		return fmt.Errorf("%w: chain ended on path %d (%s)", ErrFailed, path, pathNames[path])
	}
	j.logf("thread %d: %s done (result %d)", j.tid, j.res.Strategy, result)
	j.base = 0 // from now on the stub owns the mapping
	if j.syms.Munmap == 0 {
		j.res.Leaked = true
		j.logf("munmap not resolved: scratch mapping at %#x is left in the target", j.res.Scratch)
	}
	return nil
}

// fpOffset is where the data pages hold a copy of the borrowed thread's
// FP/vector registers (after the source, aligned for XRSTOR).
func (j *job) fpOffset() uint64 {
	return (dSrcText + uint64(len(j.src)) + 1 + fpAlign - 1) &^ (fpAlign - 1)
}

func (j *job) dataPage(final ptrace.Regs) []byte {
	b := make([]byte, dSrcText+len(j.src)+1)
	put := func(off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
	s := &j.syms
	put(dStart, s.PyThreadStartNewThread)
	put(dEnsure, s.PyGILStateEnsure)
	put(dRelease, s.PyGILStateRelease)
	put(dRun, s.PyRunSimpleString)
	if s.legacy() {
		put(dThreadsInit, s.PyEvalThreadsInitialized)
		if j.tid == j.pid && s.legacyComplete() {
			put(dIsMain, 1)
		}
	}
	put(dInitThreads, s.PyEvalInitThreads)
	put(dRestore, s.PyEvalRestoreThread)
	put(dSave, s.PyEvalSaveThread)
	put(dInterpHead, s.PyInterpreterStateHead)
	put(dThreadHead, s.PyInterpreterStateThreadHead)
	put(dAddPending, s.PyAddPendingCall)
	put(dCurrentAddr, s.PyThreadStateCurrent)
	put(dMunmap, s.Munmap)
	put(dErrnoLoc, s.ErrnoLocation)
	if s.PthreadCreate != 0 && s.PthreadDetach != 0 && s.PthreadAttrInit != 0 && s.PthreadAttrSetstacksize != 0 {
		put(dPthreadCreate, s.PthreadCreate)
		put(dPthreadDetach, s.PthreadDetach)
		put(dAttrInit, s.PthreadAttrInit)
		put(dAttrSetStack, s.PthreadAttrSetstacksize)
		put(dStackSize, threadStack)
	}
	put(dBase, j.base)
	put(dLen, j.size)
	put(dStub, j.ca.stub)
	put(dPending, j.ca.pending)
	put(dSrc, j.data+dSrcText)
	put(dTimespec, 0)
	put(dTimespec+8, uint64(time.Millisecond))
	copy(b[dSaved:], savedBlock(&final))
	sp, pc := setSavedSPPC(&final)
	put(dSavedSP, sp)
	put(dSavedPC, pc)
	copy(b[dSrcText:], j.src)
	// The untraced restore path reloads the vector registers too: the C
	// calls of the chain clobber them, and a thread borrowed at an
	// arbitrary instruction may hold live values there.
	if fp := j.saved.FP; fpImageUsable(fp) {
		off := j.fpOffset()
		b = append(b, make([]byte, off+uint64(len(fp))-uint64(len(b)))...)
		copy(b[off:], fp)
		put(dFPState, j.data+off)
	} else {
		j.logf("FP state of thread %d (%d bytes) not kept for the untraced restore", j.tid, len(fp))
	}
	return b
}

// release gives the held thread back: unmaps the scratch memory if the
// stub will not, restores the registers, marks the mapping free for the
// stub, detaches, and re-sends held signals. It never leaves the thread
// stopped or traced.
func (j *job) release() error {
	if j.tid == 0 || j.released {
		return nil
	}
	j.released = true
	defer func() { j.res.Held = time.Since(j.heldAt) }()
	tid := j.tid
	if j.inBoot && j.data != 0 && !j.goSet {
		// Tell a bootstrap not to wait.
		var two [4]byte
		binary.LittleEndian.PutUint32(two[:], 2)
		if err := j.mem.WriteForced(two[:], j.data+dGo); err != nil {
			j.logf("aborting the bootstrap: %v", err)
		}
	}
	if !j.stopped {
		// A thread that runs: in the chain or the bootstrap, or one a
		// raw syscall was not seen to finish. Stopping it may find it
		// faulting in pyglass's code (then it is restored below).
		j.stopQuietly()
	}
	if j.inChain || j.inBoot {
		// The thread runs (or is stopped inside) the chain or the cave
		// bootstrap, e.g. after a timeout, a cancellation or a failed
		// write: it can finish and restore itself. Detach it unchanged
		// and let it go.
		err := ptrace.Detach(tid, 0)
		j.resend()
		j.res.Leaked = true
		j.logf("thread %d left to finish the call and restore itself", tid)
		return err
	}
	var first error
	if j.touched {
		if j.base != 0 && j.gadget == 0 {
			// Cave setup and the chain failed: no raw syscall is run on
			// the thread with changed registers, so the mapping stays.
			j.logf("scratch mapping at %#x left in the target", j.base)
			j.res.Leaked = true
			j.base, j.data = 0, 0
		}
		if j.base != 0 {
			if r, err := j.rsys(sysMunmap, j.base, j.size); err != nil || r != 0 {
				j.logf("unmapping scratch memory: %v (result %d)", err, int64(r))
				j.res.Leaked = true
			}
			j.base, j.data = 0, 0
		}
		st := *j.saved
		st.Regs = restoredRegs(j.saved.Regs, j.restartEINTR)
		if err := ptrace.SetState(tid, &st); err != nil {
			// done stays unset: a thread left with the chain's
			// registers restores itself, and the scratch page stays.
			first = fmt.Errorf("restoring thread %d: %w", tid, err)
		} else {
			j.caveFree = true
			// done tells the code in the scratch page to unmap it,
			// now that the thread is out of it.
			if j.data != 0 && !j.res.Leaked {
				var one [4]byte
				binary.LittleEndian.PutUint32(one[:], 1)
				if err := j.mem.WriteForced(one[:], j.data+dDone); err != nil {
					first = err
				}
			}
		}
	}
	if first == nil && len(j.sigs) > 0 && deliversWithSiginfo && j.deliverHeld() {
		j.resend()
		return nil
	}
	if err := ptrace.Detach(tid, 0); err != nil && first == nil && !errors.Is(err, unix.ESRCH) {
		first = err
	}
	j.resend()
	return first
}

// resend sends the held signals deliverHeld did not deliver again, after
// the detach: they come without their siginfo (as if from tgkill).
func (j *job) resend() {
	for _, h := range j.sigs {
		if err := unix.Tgkill(j.pid, j.tid, h.sig); err != nil {
			j.logf("re-sending %v to thread %d: %v", h.sig, j.tid, err)
		}
	}
	j.sigs = nil
}

func containsWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// hijackCave sets the thread up through the cave bootstrap: it is written
// while the thread is stopped with its own registers, and from the first
// instruction the thread runs with changed registers it can restore itself
// (see bootCode). The tracer watches the bootstrap's mmap and mprotect at
// their syscall stops, writes the code and data pages in between and sets
// the go word.
func (j *job) hijackCave() error {
	final := restoredRegs(j.saved.Regs, j.restartEINTR)
	bc, err := genBoot(j.cave.addr, j.size, j.page, &final)
	if err != nil {
		return err
	}
	bc.code = binary.LittleEndian.AppendUint64(bc.code, bootStamp())
	if uint64(len(bc.code)) > j.cave.size {
		return fmt.Errorf("bootstrap is %d bytes, cave %d", len(bc.code), j.cave.size)
	}
	j.caveDirty = true
	if err := j.mem.WriteForced(bc.code, j.cave.addr); err != nil {
		j.caveFree = true // the thread never went there
		return fmt.Errorf("writing the bootstrap: %w", err)
	}
	if err := ptrace.SetRegs(j.tid, callRegs(j.saved.Regs, bc.entry)); err != nil {
		j.caveFree = true
		return j.gone(err)
	}
	j.touched, j.inBoot = true, true
	if j.abandon("boot") {
		return nil
	}
	addr, err := j.bootSyscall(bc.mmapPC, "mmap")
	if err != nil || j.released {
		return err
	}
	if int64(addr) < 0 && int64(addr) > -4096 {
		// The bootstrap would restore the thread; we do it (release).
		j.inBoot = false
		return fmt.Errorf("mapping scratch memory in the target: %v", syscall.Errno(-int64(addr)))
	}
	j.base, j.data = addr, addr+j.page
	j.res.Scratch, j.res.Len = addr, j.size
	code, ca, err := genCode(j.base, j.data)
	if err != nil {
		return err
	}
	if uint64(len(code)) > j.page {
		return fmt.Errorf("machine code is %d bytes, more than a page", len(code))
	}
	j.ca = ca
	j.breakChain(code, ca)
	if err := j.mem.WriteForced(code, j.base); err != nil {
		return err
	}
	if err := j.mem.WriteForced(j.dataPage(final), j.data); err != nil {
		return err
	}
	if j.abandon("written") {
		return nil
	}
	var one [4]byte
	binary.LittleEndian.PutUint32(one[:], 1)
	if err := j.mem.WriteForced(one[:], j.data+dGo); err != nil {
		return err
	}
	j.goSet = true
	if j.abandon("go") {
		return nil
	}
	r, err := j.bootSyscall(bc.mprotectPC, "mprotect")
	if err != nil || j.released {
		return err
	}
	if r != 0 {
		// The bootstrap unmaps the memory and restores the thread.
		j.base, j.data = 0, 0
		return fmt.Errorf("making scratch code executable: %v", syscall.Errno(-int64(r)))
	}
	j.inBoot, j.inChain = false, true
	return nil
}

// bootSyscall lets the bootstrap run to the entry and exit stops of its
// next syscall, which must be at pc, and returns its result.
func (j *job) bootSyscall(pc uint64, name string) (uint64, error) {
	hard := time.Now().Add(5 * time.Second) // mmap/mprotect do not block
	for _, step := range []string{"-entry", "-exit"} {
		if err := j.toSyscallStop(hard, nil); err != nil {
			return 0, fmt.Errorf("bootstrap %s: %w", name, err)
		}
		got, err := ptrace.GetRegs(j.tid)
		if err != nil {
			return 0, j.gone(err)
		}
		if got.PC() != pc {
			return 0, fmt.Errorf("bootstrap %s: thread stopped at %#x, not at %#x", name, got.PC(), pc)
		}
		if j.abandon(name + step) {
			return 0, nil
		}
		if step == "-exit" {
			return syscallResult(&got), nil
		}
	}
	panic("unreachable")
}

// abandon is the test hook: it detaches the (stopped) thread without
// restoring anything, as if pyglass had been killed at step.
func (j *job) abandon(step string) bool {
	if testHookAbandon == nil || !testHookAbandon(j.pid, step) {
		return false
	}
	ptrace.Detach(j.tid, 0)
	j.released, j.res.Leaked = true, true
	j.res.Held = time.Since(j.heldAt)
	j.logf("test: abandoned thread %d at step %s", j.tid, step)
	return true
}

// whereStuck stops the thread that runs the chain and describes where it
// is and how far the chain got, for the error of a chain that did not
// finish in time.
func (j *job) whereStuck() string {
	why := j.res.Why
	if !j.stopped {
		j.stopQuietly()
	}
	if !j.stopped {
		return fmt.Sprintf("thread %d (%s) could not be stopped to see where it is", j.tid, why)
	}
	var words [3][8]byte
	progress := ""
	for i, off := range []uint64{dPath, dViaPthread, dResult} {
		if _, err := j.mem.ReadAt(words[i][:], j.data+off); err != nil {
			progress = "the chain's progress unreadable"
		}
	}
	if progress == "" {
		path := binary.LittleEndian.Uint64(words[0][:])
		progress = fmt.Sprintf("chain path %s, pthread_create called %d, last result %d",
			pathNames[path], binary.LittleEndian.Uint64(words[1][:]), int64(binary.LittleEndian.Uint64(words[2][:])))
	}
	regs, err := ptrace.GetRegs(j.tid)
	if err != nil {
		return fmt.Sprintf("thread %d (%s): registers unreadable (%v); %s", j.tid, why, err, progress)
	}
	pc := regs.PC()
	where := fmt.Sprintf("pc %#x", pc)
	for _, m := range j.maps {
		if m.Contains(pc) {
			where = fmt.Sprintf("pc %#x (%s+%#x)", pc, m.Path, pc-m.Start+m.Offset)
			break
		}
	}
	if nr, ok := inSyscall(&regs, j.mem); ok {
		where += fmt.Sprintf(", in syscall %d", nr)
	}
	return fmt.Sprintf("thread %d (%s) is at %s; %s", j.tid, why, where, progress)
}

// stopQuietly interrupts the running thread and waits for the stop,
// holding signals that arrive meanwhile.
func (j *job) stopQuietly() {
	if err := ptrace.Interrupt(j.tid); err != nil {
		return
	}
	for i := 0; i < 100; i++ {
		st, err := ptrace.WaitUntil(j.tid, time.Now().Add(10*time.Second), nil)
		if err != nil || st.Kind == ptrace.StopExited {
			return
		}
		if st.Kind == ptrace.StopSignal {
			if j.faulted(st) != nil {
				j.logf("thread %d faulted in pyglass's code: giving it back its registers", j.tid)
				return
			}
			j.hold(st.Sig)
			ptrace.Cont(j.tid, 0)
			continue
		}
		j.stopped = true
		return
	}
}

// restoreCave puts the original bytes back into the cave once the thread
// is known to be out of it; otherwise the bootstrap stays (it ends with
// caveMagic, so that cave is not used again).
func (j *job) restoreCave() {
	if j.cave == nil || !j.caveDirty {
		return
	}
	if !j.caveFree {
		j.logf("code cave at %#x left modified (the thread may still run there)", j.cave.addr)
		return
	}
	if err := j.mem.WriteForced(j.cave.orig, j.cave.addr); err != nil {
		j.logf("restoring code cave at %#x: %v", j.cave.addr, err)
		return
	}
	j.caveDirty = false
}
