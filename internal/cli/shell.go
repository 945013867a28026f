package cli

import (
	"context"
	"fmt"

	"github.com/pyglass/pyglass"
)

const shellHelp = `Opens a Python prompt whose code runs inside the target, like the standard
interactive console: expressions echo their repr, blocks span several lines,
tracebacks are shown and the session goes on. Line editing and history
(arrow keys, Ctrl-R) happen on your side; the history is kept in
$XDG_STATE_HOME/pyglass/history. Ctrl-C cancels the line being typed (it does
not interrupt the target); Ctrl-D or exit() ends the session, and the target
keeps running. When stdin is not a terminal, statements are read from it and
run in order, so a session can be scripted.

The channel is a Unix socket in a private directory of the target's
filesystem that only the target's user and root can reach; nothing listens
on a network port.`

func runShell(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("shell", shellHelp, io)
	ns := fs.String("namespace", "fresh", "fresh: a new namespace where __main__'s modules are importable; main: __main__'s globals")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if *ns != "fresh" && *ns != "main" {
		fmt.Fprintf(io.Err, "pyglass shell: --namespace is fresh or main, not %q\n", *ns)
		return ExitUsage
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass shell: one PID expected\n")
		return ExitUsage
	}
	p, code, ok := attach(pos, io, "shell")
	if !ok {
		return code
	}
	status, err := p.Shell(ctx, pyglass.ShellOptions{
		MainNamespace: *ns == "main",
		In:            io.In, Out: io.Out, Err: io.Err,
		Progress: progressTo(io),
	})
	if err != nil {
		return fail(io, err)
	}
	if status != 0 {
		return ExitRaised
	}
	return ExitOK
}
