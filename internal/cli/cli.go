// Package cli implements the pyglass command line: one file per command,
// each with an options struct, a function that parses its flags and one
// that does the work, so flags and behaviour are tested separately.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/shell"
	"golang.org/x/term"
)

// ExitCode is the process exit status of pyglass.
type ExitCode int

// Exit codes, documented in `pyglass help` and the README.
const (
	ExitOK         ExitCode = 0 // success
	ExitRaised     ExitCode = 1 // the code run in the target raised
	ExitUsage      ExitCode = 2 // bad command line
	ExitNotPython  ExitCode = 3 // no such process, not Python, unsupported, zombie
	ExitPermission ExitCode = 4 // permission denied
	ExitTimeout    ExitCode = 5 // timed out
	ExitInterrupt  ExitCode = 130
)

// IO is the set of streams a command uses; tests inject buffers.
type IO struct {
	In      io.Reader
	Out     io.Writer
	Err     io.Writer
	IsTerm  bool // stdout is a terminal
	InTerm  bool // stdin is a terminal
	ErrTerm bool // stderr is a terminal (progress lines go there)
}

// Stdio returns the process's own streams.
func Stdio() IO {
	return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		IsTerm:  term.IsTerminal(int(os.Stdout.Fd())),
		InTerm:  term.IsTerminal(int(os.Stdin.Fd())),
		ErrTerm: term.IsTerminal(int(os.Stderr.Fd()))}
}

type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, args []string, io IO) ExitCode
}

var commands []command

func init() {
	commands = []command{
		{"ps", "[--json]", "list the Python processes on this machine", runPS},
		{"info", "PID [--json]", "what pyglass knows about a process, and whether it can run code in it", runInfo},
		{"stacks", "PID [--json] [--locals] [--nonblocking]", "every thread's Python stack, read from memory (runs nothing in the target)", runStacks},
		{"exec", "PID (-c CODE | FILE | -) [--timeout 30s]", "run Python code inside the process; its output comes back here", runExec},
		{"shell", "PID [--namespace fresh|main]", "an interactive Python prompt inside the process", runShell},
		{"garbage", "PID [--json] [--collect] [--saveall] [--limit N]", "unreclaimable objects (gc.garbage): counts, sizes, cycles, creation lines", runGarbage},
		{"objects", "PID [--json] [--top N] [--diff DURATION] [--all]", "live objects by type, or their growth over DURATION", runObjects},
		{"gc", "PID [--json] [--collect]", "the garbage collector's state and statistics", runGC},
		{"trace", "start|stop|status PID [--frames N]", "turn tracemalloc on or off in the process (allocation sites for garbage)", runTrace},
		{"version", "", "print pyglass's version", runVersion},
	}
}

const exitCodesHelp = `Exit status:
  0  success
  1  the code run in the target raised an exception (its traceback is on stderr);
     exec and shell exit N for SystemExit(N), as python does
  2  usage error
  3  the target is not a Python process pyglass can work with
     (no such process, not Python, unsupported version, zombie, exited)
  4  permission denied (not root / another user, missing CAP_SYS_PTRACE,
     Yama ptrace_scope, already traced by another process)
  5  timed out (e.g. a thread holds the GIL and never releases it)
`

func usage(w io.Writer) {
	fmt.Fprintf(w, "pyglass looks into live Python processes (CPython 2.7, 3.6 to 3.14).\n\nUsage:\n  pyglass COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'pyglass COMMAND --help' for a command's options.\n\n%s", exitCodesHelp)
}

// Main runs pyglass with args (without the program name) and returns the
// exit status.
func Main(args []string, io IO) ExitCode {
	if len(args) == 0 {
		usage(io.Err)
		return ExitUsage
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 {
			return Main([]string{args[1], "--help"}, io)
		}
		usage(io.Out)
		return ExitOK
	}
	for _, c := range commands {
		if c.name == name {
			sigs := []os.Signal{syscall.SIGTERM, syscall.SIGHUP}
			ctx := context.Background()
			if name == "exec" || name == "shell" {
				// Ctrl-C becomes KeyboardInterrupt in the code they
				// run (or gives up while they start).
				intr, stopIntr := shell.Interrupts()
				defer stopIntr()
				ctx = context.WithValue(ctx, interruptsKey{}, intr)
			} else {
				sigs = append(sigs, os.Interrupt)
			}
			ctx, stop := signal.NotifyContext(ctx, sigs...)
			defer stop()
			return c.run(ctx, args[1:], io)
		}
	}
	fmt.Fprintf(io.Err, "pyglass: unknown command %q\nRun 'pyglass help' for the list of commands.\n", name)
	return ExitUsage
}

type interruptsKey struct{}

// interrupts returns the user's interrupt requests (SIGINT) that Main
// set aside for exec and shell, or nil.
func interrupts(ctx context.Context) <-chan struct{} {
	c, _ := ctx.Value(interruptsKey{}).(<-chan struct{})
	return c
}

func lookup(name string) command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	panic("unknown command " + name)
}

// newFlags makes a flag set whose --help prints the command's synopsis,
// its flags and the exit codes.
func newFlags(name, long string, io IO) *flag.FlagSet {
	c := lookup(name)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Err)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: pyglass %s %s\n\n%s.\n", name, c.args, upperFirst(c.summary))
		if long != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(long))
		}
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(w, "\nOptions:\n")
			fs.PrintDefaults()
		}
		fmt.Fprintf(w, "\n%s", exitCodesHelp)
	}
	return fs
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// parse parses flags that may stand before or after positional arguments
// ("pyglass stacks --json 123" and "pyglass stacks 123 --json").
func parse(fs *flag.FlagSet, args []string, io IO) ([]string, ExitCode, bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			// Help goes to stdout, once (flag would print it on stderr).
			fs.SetOutput(io.Out)
			fs.Usage()
			return nil, ExitOK, false
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(io.Out)
				fs.Usage()
				return nil, ExitOK, false
			}
			return nil, ExitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, 0, true
}

// parsePID validates a PID argument.
func parsePID(s string, io IO) (int, bool) {
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		fmt.Fprintf(io.Err, "pyglass: %q is not a process ID (a positive number); 'pyglass ps' lists Python processes\n", s)
		return 0, false
	}
	return pid, true
}

// fail prints err as one line (plus its hint) and returns its exit code.
func fail(io IO, err error) ExitCode {
	msg := err.Error()
	fmt.Fprintf(io.Err, "pyglass: %s\n", oneLine(msg))
	if h := pyglass.HintOf(err); h != "" {
		fmt.Fprintf(io.Err, "hint: %s\n", h)
	}
	return codeOf(err)
}

func codeOf(err error) ExitCode {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupt
	case errors.Is(err, pyglass.ErrPermission):
		return ExitPermission
	case errors.Is(err, pyglass.ErrTimeout), errors.Is(err, pyglass.ErrBusy):
		return ExitTimeout
	case errors.Is(err, pyglass.ErrNoProcess), errors.Is(err, pyglass.ErrNotPython):
		return ExitNotPython
	}
	return ExitNotPython
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.ReplaceAll(s, "\n", "; ")
}
