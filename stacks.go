package pyglass

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
	"github.com/pyglass/pyglass/target/live"
)

// testHookThaw, when set (tests), is given how long each pause of a
// paused snapshot held the target's threads.
var testHookThaw func(time.Duration)

// openMemory opens the target's memory and picks the layout for its
// interpreter (3.13+: from the target's own _Py_DebugOffsets).
func (p *Process) openMemory() (*inspect.Memory, error) {
	r, err := live.Open(p.pid)
	if err != nil {
		if errors.Is(err, procfs.ErrNoProcess) {
			return nil, errs.Newf(ErrNoProcess, "", "process %d exited", p.pid)
		}
		return nil, &Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot read the memory of process %d", p.pid), Err: err,
			Hint: rootHint("run pyglass as the process's user")}
	}
	var mem memory.Reader = r
	if p.memHook != nil {
		mem = p.memHook(r)
	}
	m, err := inspect.OpenMemory(r, mem, p.pid, p.py.Version, inspect.ImageOf(p.py), p.warn)
	if err != nil {
		r.Close()
		return nil, err
	}
	return m, nil
}

// current checks that the process is still the one Attach inspected:
// the interpreter found then stays valid as long as the process is the
// same one (same start time); when it is not, the process is inspected
// again. A zombie is ErrNotPython.
func (p *Process) current() error {
	st, err := procfs.New(p.pid).Stat()
	if err != nil || procfs.IsZombie(st.State) || st.StartTime != p.proc.StartTime {
		p.refresh()
		if p.proc.Zombie {
			return errs.Newf(ErrNotPython, "", "process %d is a zombie", p.pid)
		}
	}
	return nil
}

// snapshot is the target as a target.Target: its threads as /proc lists
// them now (with, when withSyscall, the system call each is blocked in),
// its memory read through mem (nil when not needed).
func (p *Process) snapshot(mem memory.Reader, withSyscall bool) *live.Snapshot {
	s, err := live.NewSnapshot(p.pid, mem, p.proc.NSPID != p.proc.PID, withSyscall)
	if err != nil {
		// The task list could not be read (the process is gone, or
		// /proc refused): one more try, through Inspect's listing (no
		// threads when it fails too; Attach no longer keeps a list,
		// which only this fallback used).
		pts, _ := p.proc.Threads()
		ths := make([]target.Thread, 0, len(pts))
		for _, t := range pts {
			ths = append(ths, target.Thread{TID: t.TID, NSTID: t.NSTID, Name: t.Comm, State: target.State{Letter: t.State}})
		}
		s = live.SnapshotOf(p.pid, mem, ths)
	}
	return s
}

// maxTracerWait bounds how long freeze waits for another pyglass that
// holds the target paused (its pause lasts about a millisecond).
const maxTracerWait = time.Second

// freeze pauses every thread. The kernel refuses to seize a thread that is
// exiting with EPERM, as it refuses a forbidden one: when the whole process
// is exiting, that is ErrNoProcess; when one thread was, a new try
// succeeds. A thread traced by another pyglass (a concurrent stacks or
// exec) is released within milliseconds: freeze waits for it, with
// backoff, up to maxTracerWait. Another tracer is a real refusal.
// The calling goroutine's thread is the tracer (ptrace.FreezeHere): the
// Frozen is thawed by the same goroutine.
func (p *Process) freeze() (*ptrace.Frozen, error) {
	var err error
	deadline := time.Now().Add(maxTracerWait)
retry:
	for try, quiet := 0, 0; ; try++ {
		var f *ptrace.Frozen
		release := holdGC()
		if f, err = ptrace.FreezeHere(p.pid); err == nil {
			f.OnThaw = func(held time.Duration) {
				release()
				if testHookThaw != nil {
					testHookThaw(held)
				}
			}
			return f, nil
		}
		release()
		if !errors.Is(err, ptrace.ErrPermission) || time.Now().After(deadline) {
			break
		}
		// The tracer seen when the thread was refused: looking again
		// later would often find none, the other pyglass having let go
		// meanwhile, and take a busy target for a real refusal.
		var traced *ptrace.AlreadyTraced
		seen := errors.As(err, &traced)
		switch {
		case seen && isPyglass(traced.Tracer):
		case seen && procfs.New(traced.Tracer).Exists() && tracedBy(traced.Pid, traced.Tid, traced.Tracer):
			break retry // traced by someone else
		case quiet >= 3:
			break retry
		default:
			// No tracer (it let go between the refusal and the look),
			// a tracer that ended since (its tracees are let go), a
			// thread exiting, or a real refusal: a few tries only.
			quiet++
		}
		// Backoff with jitter, so that two pyglasses that each hold
		// some of the threads do not retry in step.
		d := time.Millisecond << min(try, 6)
		time.Sleep(d/2 + time.Duration(rand.Int64N(int64(d))))
		if gone := p.goneOr(nil); gone != nil {
			return nil, gone
		}
	}
	if gone := p.goneOr(nil); gone != nil {
		return nil, gone // exited while being paused
	}
	return nil, p.ptraceError(err)
}

// tracedBy reports whether thread tid of pid is (still) traced by
// tracer, as /proc says when asked again. /proc reads the tracer without
// the kernel's lock: while another pyglass attaches or lets go, a thread
// can show as traced by its real parent (a shell, a supervisor, the test
// that started it: never a pyglass) for an instant. A tracer seen twice
// is a real one.
func tracedBy(pid, tid, tracer int) bool {
	st, err := procfs.New(pid).TaskStatus(tid)
	return err == nil && st.TracerPid == tracer
}

// isPyglass reports whether thread tid belongs to a pyglass: this
// process (another goroutine's freeze, or the tracer thread of a failed
// one, still exiting), the same executable, or a program named pyglass.
func isPyglass(tid int) bool {
	if procfs.Self().HasTask(tid) {
		return true
	}
	if self, err := procfs.Self().Exe(); err == nil {
		if exe, err := procfs.New(tid).Exe(); err == nil && exe == self {
			return true
		}
	}
	comm, err := procfs.New(tid).Comm()
	return err == nil && strings.HasPrefix(comm, "pyglass")
}

// rootHint is hint, with "or run pyglass as root" unless pyglass is root.
func rootHint(hint string) string {
	if os.Geteuid() == 0 {
		return hint
	}
	if hint == "" {
		return "run pyglass as root"
	}
	return hint + ", or run pyglass as root"
}

func (p *Process) ptraceError(err error) error {
	switch {
	case errors.Is(err, procfs.ErrNoProcess):
		return errs.Newf(ErrNoProcess, "", "process %d exited", p.pid)
	case errors.Is(err, ptrace.ErrPermission):
		return &Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot pause the threads of process %d", p.pid), Err: err,
			Hint: rootHint("use --nonblocking to read without pausing")}
	}
	return err
}

// threadNames reads the Python thread names from memory (no code run,
// no pause), keyed by our thread ids.
func (p *Process) threadNames() map[int]string {
	d, err := p.Stacks(context.Background(), StackOptions{NonBlocking: true})
	if err != nil {
		return nil
	}
	out := map[int]string{}
	for _, t := range d.Threads {
		if t.Name != "" {
			out[t.TID] = t.Name
		}
	}
	return out
}

// gilHolder names the thread holding the GIL, read from memory.
func (p *Process) gilHolder() (string, bool) {
	d, err := p.Stacks(context.Background(), StackOptions{NonBlocking: true})
	if err != nil {
		return "", false
	}
	for _, t := range d.Threads {
		if t.HoldsGIL {
			s := fmt.Sprintf("thread %d", t.TID)
			if t.Name != "" {
				s += fmt.Sprintf(" (%q)", t.Name)
			}
			if n := len(t.Frames); n > 0 {
				f := t.Frames[n-1]
				s += fmt.Sprintf(", at %s:%d in %s", f.File, f.Line, f.Function)
			}
			return s, true
		}
	}
	return "", false
}

// live is what the reports of internal/inspect need of the process
// beyond its memory.
func (p *Process) live() *inspect.Live {
	return &inspect.Live{PID: p.pid, Proc: p.proc, Py: p.py, Current: p.current, Snapshot: p.snapshot, Freeze: p.freeze, Gone: p.goneOr}
}

// Stacks reads every Python thread's stack from the target's memory,
// without running anything in it. Unless opt.NonBlocking, the threads are
// paused (PTRACE_SEIZE + PTRACE_INTERRUPT, no signal) while they are
// read and resumed at once; a thread the user had stopped stays stopped.
// A thread that cannot be read is returned with its Error set.
func (p *Process) Stacks(ctx context.Context, opt StackOptions) (_ *StackDump, err error) {
	defer guard(&err, "stacks", p.pid)
	m, err := p.openCurrent()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return inspect.Stacks(ctx, p.live(), m, opt)
}

// openCurrent checks that the process is a live one and still the one
// Attach inspected, and opens its memory.
func (p *Process) openCurrent() (*inspect.Memory, error) {
	if p.proc.Zombie {
		return nil, errs.Newf(ErrNotPython, "", "process %d is a zombie", p.pid)
	}
	if err := p.current(); err != nil {
		return nil, err
	}
	return p.openMemory()
}
