package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pyglass/pyglass"
)

// maxCode bounds the size of the code pyglass sends.
const maxCode = 64 << 20

const execHelp = `The code runs inside the target on a new thread pyglass starts there, in a
fresh namespace (__name__ == "__pyglass__") where the target's modules can be
imported, or in __main__'s globals with --namespace main. What the code leaves
behind keeps working: a function it installs as a hook or a thread it starts
still sees the names it defined and imported (the fresh namespace is emptied
only when nothing refers to it any more). What it writes to sys.stdout and sys.stderr comes back here, in
order; what the target's own threads print stays on the target's streams.
__file__ is the script's name (or <stdin>). If the code raises, its
traceback is printed here on stderr and pyglass exits 1; SystemExit(N)
exits N, as python does. Ctrl-C raises KeyboardInterrupt in the code's own
thread (never in the target's threads); code in a call that does not check
for interrupts (a sleep, a lock, I/O) stops when that call returns, and a
second Ctrl-C after pyglass says so leaves it running. After --timeout the
code is interrupted the same way and pyglass exits 5. The target is never
left stopped or traced.

Examples:
  pyglass exec 1234 -c 'import gc; print(len(gc.garbage))'
  pyglass exec 1234 dump_state.py
  echo 'print(42)' | pyglass exec 1234 -`

func runExec(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("exec", execHelp, io)
	code := fs.String("c", "", "the code to run")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long (exit 5) if the code cannot start or does not finish")
	ns := fs.String("namespace", "fresh", "fresh: a new namespace where __main__'s modules are importable; main: __main__'s globals")
	pos, ec, ok := parse(fs, args, io)
	if !ok {
		return ec
	}
	if *ns != "fresh" && *ns != "main" {
		fmt.Fprintf(io.Err, "pyglass exec: --namespace is fresh or main, not %q\n", *ns)
		return ExitUsage
	}
	codeSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "c" {
			codeSet = true
		}
	})
	if len(pos) == 0 {
		fmt.Fprintf(io.Err, "pyglass exec: missing PID\nUsage: pyglass exec %s\n", lookup("exec").args)
		return ExitUsage
	}
	var src []byte
	filename := "<string>"
	switch {
	case codeSet && len(pos) > 1:
		fmt.Fprintf(io.Err, "pyglass exec: give either -c CODE or a script, not both\n")
		return ExitUsage
	case codeSet:
		src = []byte(*code)
	case len(pos) == 2:
		var err error
		if pos[1] == "-" {
			filename = "<stdin>"
			src, err = readAllLimit(io.In, maxCode)
		} else {
			filename = pos[1]
			var f *os.File
			f, err = os.Open(pos[1])
			if err == nil {
				src, err = readAllLimit(f, maxCode)
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(io.Err, "pyglass exec: cannot read the script: %s\n", oneLine(err.Error()))
			return ExitUsage
		}
	case len(pos) > 2:
		fmt.Fprintf(io.Err, "pyglass exec: too many arguments\n")
		return ExitUsage
	default:
		fmt.Fprintf(io.Err, "pyglass exec: no code: give -c CODE, a script file, or - to read stdin\n")
		return ExitUsage
	}
	if len(src) == 0 || len(trimSpace(src)) == 0 {
		fmt.Fprintf(io.Err, "pyglass exec: the code is empty; nothing to run\n")
		return ExitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(io.Err, "pyglass exec: --timeout must be positive\n")
		return ExitUsage
	}
	p, ec, ok := attach(ctx, pos[:1], io, "exec")
	if !ok {
		return ec
	}
	res, err := p.Exec(ctx, src, pyglass.ExecOptions{
		Filename:      filename,
		MainNamespace: *ns == "main",
		Stdout:        io.Out,
		Stderr:        io.Err,
		Timeout:       *timeout,
		Progress:      progressTo(io),
		Interrupt:     interrupts(ctx),
		Notice:        noticeTo(io),
	})
	if err != nil {
		return fail(io, err)
	}
	return ExitCode(res.Status & 255)
}

// noticeTo prints a line for the user on stderr.
func noticeTo(io IO) func(string) {
	return func(s string) { fmt.Fprintf(io.Err, "\npyglass: %s\n", s) }
}

func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	for j > i && (b[j-1] == ' ' || b[j-1] == '\n' || b[j-1] == '\t' || b[j-1] == '\r') {
		j--
	}
	return b[i:j]
}

func readAllLimit(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, errors.New("larger than 64 MiB")
	}
	return b, nil
}

// progressTo returns a function printing progress lines on stderr when
// it is a terminal, or nil.
func progressTo(io IO) func(string) {
	if !io.ErrTerm {
		return nil
	}
	return func(s string) {
		if s == "" {
			fmt.Fprint(io.Err, "\r\033[K")
			return
		}
		fmt.Fprintf(io.Err, "\r\033[K%s", s)
	}
}
