package pyglass

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/pyglass/pyglass/internal/agent"
	"github.com/pyglass/pyglass/internal/channel"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/inject"
	"github.com/pyglass/pyglass/internal/procfs"
)

// session is one agent running inside the target, connected to pyglass
// through a private channel.
type session struct {
	ch     *channel.Channel
	uc     *net.UnixConn
	conn   *agent.Conn
	method string
	thread int
	held   time.Duration
	// p and forks: the target and its children before the session, whose
	// children forked during it are looked at when it ends.
	p     *Process
	forks forkWatch
}

func (s *session) close() {
	if s.p != nil {
		defer s.p.endStuckForks(s.forks)
		s.p = nil
	}
	if s.conn != nil {
		s.conn.Close()
	} else if s.uc != nil {
		s.uc.Close()
	}
	if s.ch != nil {
		s.ch.Close()
	}
}

// symbols gathers the addresses inject needs.
func (p *Process) symbols() (inject.Symbols, error) {
	lib, err := p.py.CLib()
	if err != nil {
		return inject.Symbols{}, err
	}
	sym := func(name string) uint64 {
		a, _ := p.py.Symbol(name)
		return a
	}
	s := inject.Symbols{
		PyGILStateEnsure:        sym("PyGILState_Ensure"),
		PyGILStateRelease:       sym("PyGILState_Release"),
		PyRunSimpleString:       sym("PyRun_SimpleString"),
		PyThreadStartNewThread:  sym("PyThread_start_new_thread"),
		Munmap:                  lib.Munmap,
		ErrnoLocation:           lib.ErrnoLocation,
		PthreadCreate:           lib.Pthread[0],
		PthreadDetach:           lib.Pthread[1],
		PthreadAttrInit:         lib.Pthread[2],
		PthreadAttrSetstacksize: lib.Pthread[3],
		// Every version: the gate for threads busy in C code needs it.
		PyEvalRestoreThread: sym("PyEval_RestoreThread"),
	}
	if v := p.py.Version; v.Major == 2 || (v.Major == 3 && v.Minor < 7) {
		s.PyEvalThreadsInitialized = sym("PyEval_ThreadsInitialized")
		s.PyEvalInitThreads = sym("PyEval_InitThreads")
		s.PyEvalRestoreThread = sym("PyEval_RestoreThread")
		s.PyEvalSaveThread = sym("PyEval_SaveThread")
		s.PyInterpreterStateHead = sym("PyInterpreterState_Head")
		s.PyInterpreterStateThreadHead = sym("PyInterpreterState_ThreadHead")
		s.PyAddPendingCall = sym("Py_AddPendingCall")
		s.PyThreadStateCurrent = sym("_PyThreadState_Current")
	}
	for _, r := range p.py.Text {
		s.InterpreterText = append(s.InterpreterText, [2]uint64{r.Start, r.End})
	}
	return s, nil
}

// startAgent starts the agent in the target and waits until it has
// connected, all within deadline. The per-target lock is held only while
// the agent is being started: two sessions may then run side by side.
func (p *Process) startAgent(ctx context.Context, deadline time.Time, progress func(string)) (*session, error) {
	// Cheap refusals first (zombie, stopped, another user); the tracer
	// check is repeated under the lock, where another pyglass that was
	// starting an agent has let go.
	if _, reason := p.execPlanFresh(); reason != "" && p.proc.TracerPID == 0 {
		return nil, p.planError(reason)
	}
	st, err := procfs.New(p.pid).Status()
	if err != nil {
		return nil, convertErr(err)
	}
	lock, err := channel.Acquire(ctx, p.pid, p.proc.StartTime, time.Until(deadline), func() {
		if progress != nil {
			progress(fmt.Sprintf("waiting for another pyglass working on process %d...", p.pid))
		}
	})
	if progress != nil {
		progress("")
	}
	if err != nil {
		if errors.Is(err, channel.ErrLocked) {
			return nil, errs.Newf(ErrBusy, "wait for the other pyglass to finish, or raise --timeout", "another pyglass kept process %d busy for longer than the timeout", p.pid)
		}
		return nil, unsafeError(err)
	}
	defer lock.Release()
	if err := p.waitUntraced(deadline); err != nil {
		return nil, p.goneOr(err)
	}

	ch, err := channel.Create(p.pid, st.Uid[1], st.Gid[1])
	if err != nil {
		return nil, unsafeError(p.goneOr(err))
	}
	s := &session{ch: ch}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	for name, src := range agent.Files {
		if err := ch.WriteFile(name, src); err != nil {
			return nil, p.goneOr(fmt.Errorf("writing the agent: %w", err))
		}
	}
	// Nothing is started in the target when its user has already moved
	// the directory away: the agent would not find its files.
	if err := ch.Check(); err != nil {
		return nil, unsafeError(err)
	}
	uc, why, err := p.tryRemoteExec(ctx, ch, deadline)
	if err != nil {
		return nil, err
	}
	switch {
	case uc != nil:
		s.method = "PEP 768 (sys.remote_exec's mechanism): a running thread of the target started the agent; no ptrace"
	case time.Now().Before(deadline):
		syms, err := p.symbols()
		if err != nil {
			return nil, p.goneOr(err)
		}
		boot := agent.Bootstrap(ch.Dir)
		// The whole timeout: a thread busy in C code may be awaited that long.
		res, err := inject.StartThreadContext(ctx, p.pid, syms, []byte(boot), inject.Options{
			Timeout:    time.Until(deadline),
			AvoidEINTR: p.py.Version.Major == 2,
		})
		if err != nil {
			return nil, p.injectError(err)
		}
		s.method, s.thread, s.held = "ptrace: "+res.Strategy+why, res.Thread, res.Held
	}
	waitStart := time.Now()
	var stopProgress func()
	if progress != nil {
		t := time.AfterFunc(time.Second, func() {
			progress(fmt.Sprintf("waiting for the GIL in process %d...", p.pid))
		})
		stopProgress = func() { t.Stop(); progress("") }
	}
	if uc == nil {
		uc, err = p.acceptWhileAlive(ctx, ch, deadline)
	}
	if stopProgress != nil {
		stopProgress()
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, p.gilTimeout(time.Since(waitStart))
		}
		return nil, err
	}
	// The agent is in: nobody else may connect.
	ch.StopListening()
	s.uc = uc
	conn, err := agent.NewConn(uc, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	s.conn = conn
	ok = true
	return s, nil
}

// execPlanFresh re-reads the process state (cheaply: /proc/PID/status
// only) before deciding. The state and the tracer come from one read:
// read apart, another pyglass could stop the process between the two and
// let it go before the second, and a process stopped by a tracer that
// was gone looked stopped by SIGSTOP (seen in CI: TestConcurrentExecs).
func (p *Process) execPlanFresh() (string, string) {
	st, err := procfs.New(p.pid).Status()
	if err != nil || st.State == 0 {
		p.proc.Zombie = true
		p.proc.TracerPID = 0 // not known: the process is gone
	} else {
		p.proc.State = st.State
		p.proc.Zombie = procfs.IsZombie(st.State)
		p.proc.TracerPID = st.TracerPid
	}
	return p.execPlan()
}

func (p *Process) planError(reason string) error {
	pr := p.proc
	switch {
	case pr.TracerPID != 0:
		return errs.Newf(ErrPermission, "detach the other tracer (debugger, strace) first", "cannot run code in process %d: %s", p.pid, reason)
	case os.Geteuid() != 0 && os.Geteuid() != pr.EUID:
		return errs.Newf(ErrPermission, "run pyglass as root (sudo), or as the process's user", "cannot run code in process %d: %s", p.pid, reason)
	}
	return errs.Newf(ErrNotPython, "", "cannot run code in process %d: %s", p.pid, reason)
}

// goneOr reports a vanished target as ErrNoProcess, anything else as is.
func (p *Process) goneOr(err error) error {
	if !procfs.New(p.pid).Exists() {
		return errs.Newf(ErrNoProcess, "", "process %d exited", p.pid)
	}
	// (a process reaped between the two looks, or being torn down: its
	// stat file is gone or refuses to be read)
	if st, serr := procfs.New(p.pid).Stat(); (serr == nil && procfs.IsZombie(st.State)) || errors.Is(serr, procfs.ErrNoProcess) || errors.Is(serr, fs.ErrNotExist) {
		return errs.Newf(ErrNoProcess, "", "process %d exited", p.pid)
	}
	return err
}

func (p *Process) injectError(err error) error {
	switch {
	case errors.Is(err, inject.ErrGone):
		return &Error{Kind: ErrNoProcess, Msg: fmt.Sprintf("process %d exited", p.pid)}
	case errors.Is(err, inject.ErrPermission):
		return &Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot trace process %d", p.pid), Err: err,
			Hint: "run pyglass as root, or give it CAP_SYS_PTRACE; a process can only be traced by one tracer at a time"}
	case errors.Is(err, inject.ErrStopped):
		return &Error{Kind: ErrNotPython, Msg: fmt.Sprintf("process %d is stopped (SIGSTOP)", p.pid), Hint: "send it SIGCONT first: kill -CONT " + fmt.Sprint(p.pid)}
	case errors.Is(err, inject.ErrTimeout):
		e := &Error{Kind: ErrTimeout, Msg: fmt.Sprintf("could not start a thread in process %d in time", p.pid), Err: err,
			Hint: "'pyglass stacks " + fmt.Sprint(p.pid) + "' shows what each thread is doing (reads memory, needs no GIL)"}
		if h, ok := p.gilHolder(); ok {
			// A C call that holds the GIL cannot run Python before it returns.
			e.Hint = h + " holds the GIL; " + e.Hint
		}
		return e
	case errors.Is(err, context.Canceled):
		return err
	}
	return &Error{Kind: ErrNotPython, Msg: fmt.Sprintf("could not start a thread in process %d", p.pid), Err: err}
}

// gilTimeout explains why the code could not start: who holds the GIL.
func (p *Process) gilTimeout(waited time.Duration) error {
	who := "some thread"
	if h, ok := p.gilHolder(); ok {
		who = h
	}
	return &Error{Kind: ErrTimeout,
		Msg:  fmt.Sprintf("timed out after %s: the code could not start because %s holds the GIL and has not released it; nothing was run and nothing will run later", waited.Round(time.Millisecond), who),
		Hint: "'pyglass stacks " + fmt.Sprint(p.pid) + "' shows what that thread is doing (reads memory, needs no GIL)"}
}

// acceptWhileAlive waits for the agent to connect, checking every 100 ms
// that the target still exists, so that a target exiting meanwhile is
// reported at once rather than at the deadline.
func (p *Process) acceptWhileAlive(ctx context.Context, ch *channel.Channel, deadline time.Time) (*net.UnixConn, error) {
	for {
		step := time.Now().Add(100 * time.Millisecond)
		if step.After(deadline) {
			step = deadline
		}
		uc, err := ch.Accept(ctx, step)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return uc, err
		}
		if !time.Now().Before(deadline) {
			return nil, err
		}
		if st, serr := procfs.New(p.pid).Stat(); serr != nil || procfs.IsZombie(st.State) {
			return nil, errs.Newf(ErrNoProcess, "", "process %d exited before the code could start", p.pid)
		}
		// The agent would not find its directory: say so now, not at the
		// deadline.
		if err := ch.Check(); err != nil {
			return nil, unsafeError(err)
		}
	}
}

// unsafeError reports pyglass refusing to work in a target's filesystem
// that is not what it made or expects (exit 4); other errors are
// returned as they are.
func unsafeError(err error) error {
	if errors.Is(err, channel.ErrUnsafe) {
		return &Error{Kind: ErrPermission, Msg: "refusing to go on", Err: err,
			Hint: "another user (maybe the target's) made or changed the file named; nothing was run"}
	}
	return err
}

// waitUntraced re-checks the plan under the lock. A tracer that is
// another pyglass (a 'stacks' pausing the threads for a few milliseconds)
// is waited for, up to a second; any other tracer is an error.
func (p *Process) waitUntraced(deadline time.Time) error {
	limit := time.Now().Add(time.Second)
	if limit.After(deadline) {
		limit = deadline
	}
	for {
		_, reason := p.execPlanFresh()
		if reason == "" {
			return nil
		}
		// Another pyglass lets go within milliseconds; a tracer that is
		// not one and is seen again is a real one (see tracedBy).
		tracer := p.proc.TracerPID
		if tracer == 0 || time.Now().After(limit) || !isPyglass(tracer) && tracedBy(p.pid, p.pid, tracer) {
			return p.planError(reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
