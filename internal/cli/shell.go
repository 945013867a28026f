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
$XDG_STATE_HOME/pyglass/history. Ctrl-C cancels the line being typed; while
a statement runs it raises KeyboardInterrupt in it (in the shell's own thread
in the target, never in the target's threads), the traceback and the prompt
come back and the session goes on. A statement in a call that does not check
for interrupts (a sleep, a lock, I/O) stops when that call returns; a second
Ctrl-C after pyglass says so leaves the session. Ctrl-D or exit() ends the
session (exit(N) exits N), and the target keeps running. When stdin is not a
terminal, all of it runs as one program, as python runs a script piped to it
(pyglass exits 1 if it raised).

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
	p, code, ok := attach(ctx, pos, io, "shell")
	if !ok {
		return code
	}
	status, err := p.Shell(ctx, pyglass.ShellOptions{
		MainNamespace: *ns == "main",
		In:            io.In, Out: io.Out, Err: io.Err,
		Progress:  progressTo(io),
		Interrupt: interrupts(ctx),
	})
	if err != nil {
		return fail(io, err)
	}
	return ExitCode(status & 255)
}
