package pyglass

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pyglass/pyglass/internal/agent"
	"github.com/pyglass/pyglass/internal/procfs"
)

// Exec runs code inside the process, on a new thread pyglass starts there,
// in a fresh namespace whose __name__ is "__pyglass__" and whose __file__
// is opt.Filename unless that is "<string>" (or __main__'s globals with
// opt.MainNamespace). What the code left behind that refers to the
// namespace (a function installed as a hook, a thread it started) keeps
// working after Exec returns. What the code
// writes to sys.stdout and sys.stderr is copied to opt.Stdout and
// opt.Stderr in order; what the target's own threads print is left alone.
//
// It returns ExecResult.Raised when the code raised (the traceback went to
// opt.Stderr), and the exit status python would give in Status. Errors:
// ErrNoProcess (the target exited), ErrNotPython, ErrPermission,
// ErrTimeout (the code could not start because a thread holds the GIL, or
// it did not finish in time and was interrupted), ErrBusy. opt.Interrupt
// stops the code; cancelling ctx stops waiting for it and leaves it
// running. The target is left running either way.
func (p *Process) Exec(ctx context.Context, code []byte, opt ExecOptions) (_ ExecResult, err error) {
	defer guard(&err, "exec", p.pid)
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	if opt.Filename == "" {
		opt.Filename = "<string>"
	}
	if opt.Stdout == nil {
		opt.Stdout = io.Discard
	}
	if opt.Stderr == nil {
		opt.Stderr = io.Discard
	}
	deadline := time.Now().Add(opt.Timeout)
	s, err := p.startInterruptible(ctx, deadline, opt.Interrupt, opt.Progress)
	if err != nil {
		return ExecResult{}, err
	}
	defer s.close()
	res := ExecResult{Thread: s.conn.Hello().TID, Method: s.method, Held: s.held}

	ns := agent.NamespaceFresh
	if opt.MainNamespace {
		ns = agent.NamespaceMain
	}
	var status int
	out, err := s.conn.Await(ctx, func() error {
		var err error
		status, err = s.conn.ExecIn(ns, code, opt.Filename, opt.Stdout, opt.Stderr)
		return err
	}, agent.AwaitOptions{
		Interrupt: opt.Interrupt,
		Deadline:  deadline,
		OnStuck:   p.stuckNotice(opt.Notice, res.Thread, "Ctrl-C again leaves it running"),
	})
	where := fmt.Sprintf("process %d (thread %d)", p.pid, res.Thread)
	hint := "'pyglass stacks " + fmt.Sprint(p.pid) + "' shows where it is"
	switch out {
	case agent.Cancelled, agent.Left:
		cause := ctx.Err()
		if cause == nil {
			cause = context.Canceled
		}
		return res, &Error{Kind: cause, Msg: fmt.Sprintf("left the code running in %s; it ends by itself", where)}
	case agent.StillRunning:
		return res, &Error{Kind: ErrTimeout, Hint: hint,
			Msg: fmt.Sprintf("timed out after %s and the code did not stop within %s of KeyboardInterrupt: it is in a call that does not check for interrupts (C code, a sleep, a lock, I/O); it is still running in %s and stops when that call returns", opt.Timeout, agent.StopWait, where)}
	}
	if err != nil {
		// A target that exits closes the connection a moment before it
		// is gone from /proc: give it that moment before deciding.
		for i := 0; i < 25 && p.alive(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		return res, p.goneOr(fmt.Errorf("lost the connection to the code in process %d: %w", p.pid, err))
	}
	res.Status = status
	res.Raised = status != 0
	if out == agent.Stopped {
		return res, &Error{Kind: ErrTimeout, Hint: "give a longer --timeout",
			Msg: fmt.Sprintf("timed out after %s: the code was stopped (KeyboardInterrupt in its thread)", opt.Timeout)}
	}
	return res, nil
}

// startInterruptible starts the agent; an interrupt request meanwhile
// gives up, and nothing runs.
func (p *Process) startInterruptible(ctx context.Context, deadline time.Time, interrupt <-chan struct{}, progress func(string)) (*session, error) {
	forks := p.watchForks()
	start := func(ctx context.Context) (*session, error) {
		s, err := p.startAgent(ctx, deadline, progress)
		if s != nil {
			s.p, s.forks = p, forks
			if s.conn != nil {
				p.warnCFork(s.conn.Hello().CFork)
			}
		}
		return s, err
	}
	if interrupt == nil {
		return start(ctx)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	asked := make(chan bool, 1)
	go func() {
		select {
		case <-interrupt:
			cancel()
			asked <- true
		case <-stop:
			asked <- false
		}
	}()
	s, err := start(sctx)
	close(stop)
	if <-asked {
		if s != nil {
			s.close()
		}
		return nil, &Error{Kind: context.Canceled, Msg: fmt.Sprintf("interrupted before the code started in process %d; nothing was run", p.pid)}
	}
	return s, err
}

// stuckNotice returns the function that tells the user that code did not
// stop after Ctrl-C, or nil.
func (p *Process) stuckNotice(notice func(string), thread int, next string) func() {
	if notice == nil {
		return nil
	}
	return func() {
		notice(fmt.Sprintf("the code has not stopped %s after KeyboardInterrupt: thread %d is in a call that does not check for interrupts (C code, a sleep, a lock, I/O) and stops when it returns; %s",
			agent.StopWait, thread, next))
	}
}

// alive reports whether the process exists and is not a zombie.
func (p *Process) alive() bool {
	st, err := procfs.New(p.pid).Stat()
	return err == nil && !procfs.IsZombie(st.State)
}
