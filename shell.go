package pyglass

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/pyglass/pyglass/internal/shell"
)

// ShellOptions configure Shell.
type ShellOptions struct {
	// MainNamespace runs statements in __main__'s globals instead of a
	// fresh namespace.
	MainNamespace bool
	// In, Out and Err are the user's streams. With terminals, the shell
	// has line editing and history; otherwise it reads statements from In
	// and runs them in order.
	In       io.Reader
	Out, Err io.Writer
	// HistoryFile overrides the history location ("-": none).
	HistoryFile string
	// StartTimeout bounds how long the shell may take to start (30 s
	// when zero).
	StartTimeout time.Duration
	Progress     func(string)
	// Interrupt, if set, receives the user's interrupt requests (Ctrl-C
	// outside line editing, i.e. SIGINT): one while the shell starts
	// gives up; while a statement runs, see Shell. Without it the shell
	// catches SIGINT itself once it has started.
	Interrupt <-chan struct{}
}

// Shell opens an interactive Python prompt inside the process and serves
// it until the user ends it (Ctrl-D or exit()); with In not a terminal it
// runs all of In as one program. It returns the session's exit status (a
// SystemExit's code; 1 when the piped program raised). Ctrl-C interrupts
// the running statement (KeyboardInterrupt in the agent's thread only); a
// second one after pyglass says the statement does not stop leaves the
// session: the error wraps context.Canceled. The in-target side stops and removes its files within two
// seconds of pyglass going away in any manner.
func (p *Process) Shell(ctx context.Context, opt ShellOptions) (_ int, err error) {
	defer guard(&err, "shell", p.pid)
	if opt.StartTimeout <= 0 {
		opt.StartTimeout = 30 * time.Second
	}
	s, err := p.startInterruptible(ctx, time.Now().Add(opt.StartTimeout), opt.Interrupt, opt.Progress)
	if err != nil {
		return 0, err
	}
	defer s.close()
	stop := context.AfterFunc(ctx, func() { s.uc.Close() })
	defer stop()
	h := s.conn.Hello()
	status, err := shell.Run(shell.Options{
		Conn: s.conn, MainNamespace: opt.MainNamespace,
		In: opt.In, Out: opt.Out, Err: opt.Err,
		HistoryFile: opt.HistoryFile, Interrupt: opt.Interrupt,
		PID: p.pid, Thread: h.TID, Version: h.Version, Executable: h.Executable,
	})
	if errors.Is(err, shell.ErrLeft) {
		return status, &Error{Kind: context.Canceled, Msg: err.Error()}
	}
	if err != nil && ctx.Err() != nil {
		return status, ctx.Err()
	}
	if err != nil {
		return status, p.goneOr(err)
	}
	return status, nil
}
