package pyglass

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pyglass/pyglass/internal/agent"
	"github.com/pyglass/pyglass/internal/procfs"
)

// Exec runs code inside the process, on a new thread pyglass starts there,
// in a fresh namespace whose __name__ is "__pyglass__" (or __main__'s
// globals with opt.MainNamespace). What the code left behind that refers
// to the namespace (a function installed as a hook, a thread it started)
// keeps working after Exec returns. What the code
// writes to sys.stdout and sys.stderr is copied to opt.Stdout and
// opt.Stderr in order; what the target's own threads print is left alone.
//
// It returns ExecResult.Raised when the code raised (the traceback went to
// opt.Stderr). Errors: ErrNoProcess (the target exited), ErrNotPython,
// ErrPermission, ErrTimeout (the code could not start because a thread
// holds the GIL, or it did not finish in time), ErrBusy. Cancelling ctx
// stops waiting; the target is left running either way.
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
	s, err := p.startAgent(ctx, deadline, opt.Progress)
	if err != nil {
		return ExecResult{}, err
	}
	defer s.close()
	res := ExecResult{Thread: s.conn.Hello().TID, Method: s.method, Held: s.held}

	s.uc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	ns := agent.NamespaceFresh
	if opt.MainNamespace {
		ns = agent.NamespaceMain
	}
	status, err := s.conn.ExecIn(ns, code, opt.Filename, opt.Stdout, opt.Stderr)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return res, fmt.Errorf("interrupted; the code may still be running in process %d (thread %d): %w", p.pid, res.Thread, ctx.Err())
		case errors.Is(err, os.ErrDeadlineExceeded):
			return res, &Error{Kind: ErrTimeout, Msg: fmt.Sprintf("timed out after %s; the code is still running in process %d (thread %d)", opt.Timeout, p.pid, res.Thread),
				Hint: "give a longer --timeout; 'pyglass stacks " + fmt.Sprint(p.pid) + "' shows where it is"}
		}
		// A target that exits closes the connection a moment before it
		// is gone from /proc: give it that moment before deciding.
		for i := 0; i < 25 && p.alive(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		return res, p.goneOr(fmt.Errorf("lost the connection to the code in process %d: %w", p.pid, err))
	}
	res.Raised = status != 0
	return res, nil
}

// alive reports whether the process exists and is not a zombie.
func (p *Process) alive() bool {
	st, err := procfs.New(p.pid).Stat()
	return err == nil && !procfs.IsZombie(st.State)
}
