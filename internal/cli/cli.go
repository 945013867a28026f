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
	"regexp"
	"strconv"
	"strings"
	"sync"
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
	ExitInternal   ExitCode = 6 // pyglass's own failure: output not written, or an error it cannot classify
	ExitInterrupt  ExitCode = 130
	// ExitBrokenPipe is the status of a shell's command killed by SIGPIPE
	// (128+13): the reader of the output went away ("pyglass ps | head
	// -1"). Nothing is printed about it. The binary writing to its own
	// stdout dies of the signal itself, as other commands do.
	ExitBrokenPipe ExitCode = 141
)

// IO is the set of streams a command uses; tests inject buffers.
type IO struct {
	In      io.Reader
	Out     io.Writer
	Err     io.Writer
	IsTerm  bool // stdout is a terminal
	InTerm  bool // stdin is a terminal
	ErrTerm bool // stderr is a terminal (progress lines go there)
	Width   int  // stdout's terminal width in columns; 0 when not a terminal
}

// Stdio returns the process's own streams.
func Stdio() IO {
	io := IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		IsTerm:  term.IsTerminal(int(os.Stdout.Fd())),
		InTerm:  term.IsTerminal(int(os.Stdin.Fd())),
		ErrTerm: term.IsTerminal(int(os.Stderr.Fd()))}
	if io.IsTerm {
		if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil && w > 0 {
			io.Width = w
		}
	}
	return io
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
		{"ps", "[NAME...] [--json] [--tree]", "list the Python processes on this machine (or those matching NAME)", runPS},
		{"info", "PID [--json] | --core FILE", "what pyglass knows about a process, and whether it can run code in it", runInfo},
		{"stacks", "PID [--json] [--locals] [--nonblocking] [--async] [--native|--native-all] | --core FILE|--coredump PID|latest [--exe PATH] [--sysroot DIR] [--lib-path DIR[:DIR]]", "every thread's Python stack, read from memory (runs nothing in the target)", runStacks},
		{"tasks", "PID [--tree] [--all] [--json | --csv] [--nonblocking] | --core FILE|--coredump PID|latest [--exe PATH] [--sysroot DIR] [--lib-path DIR[:DIR]]", "every asyncio task: its coroutine stack, what it awaits, who awaits it (read from memory)", runTasks},
		{"locks", "PID [--json] | --core FILE|--coredump PID|latest [--exe PATH] [--sysroot DIR] [--lib-path DIR[:DIR]]", "what each thread waits for, who holds it, and deadlock cycles (runs nothing in the target)", runLocks},
		{"record", "PID [PID...] | -- COMMAND [ARGS]  [-o FILE] [--format F] [--rate HZ] [--duration D] [--idle] [--gil] [--threads] [--subprocesses] [--blocking]", "sample the stacks into a profile: where the time goes (never stops the target)", runRecord},
		{"top", "PID [--rate HZ] [--idle] [--gil] [--interval D] [--duration D]", "a live, top-like view of the functions using the time (never stops the target)", runTop},
		{"exec", "PID (-c CODE | FILE | -) [--timeout 30s] [--namespace fresh|main]", "run Python code inside the process; its output comes back here", runExec},
		{"shell", "PID [--namespace fresh|main]", "an interactive Python prompt inside the process", runShell},
		{"garbage", "PID [--json] [--collect] [--saveall] [--limit N]", "unreclaimable objects (gc.garbage): counts, sizes, cycles, creation lines", runGarbage},
		{"objects", "PID [--json] [--top N] [--diff DURATION] [--all] [--paths [CLASS]] [--limit N]", "live objects by type, or their growth over DURATION", runObjects},
		{"gc", "PID [--json] [--collect]", "the garbage collector's state and statistics", runGC},
		{"trace", "start|stop|status|top PID [--frames N] [--by line|file|traceback] [--diff D] [--limit N] [--exact] [--json]", "tracemalloc on or off, and its top allocating lines and their growth", runTrace},
		{"dump", "PID [-o FILE] [--json]", "write an ELF core of the process (like gcore), which keeps running untraced", runDump},
		{"version", "", "print pyglass's version", runVersion},
	}
}

const exitCodesHelp = `Exit status:
  0    success
  1    the code run in the target raised an exception (its traceback is on stderr);
       exec and shell exit N for SystemExit(N), as python does
  2    usage error
  3    the target is not a Python process pyglass can work with
       (no such process, not Python, unsupported version, zombie, exited)
  4    permission denied (not root / another user, missing CAP_SYS_PTRACE,
       Yama ptrace_scope, already traced by another process)
  5    timed out (e.g. a thread holds the GIL and never releases it)
  6    pyglass failed on its own side, not the target's: its output could not
       be written (disk full, ...), a core would not fit (dump), or an error it cannot classify (the message
       starts with "pyglass: internal error:"; please report it)
  141  the output's reader went away ("| head -1"): pyglass stops quietly
`

func usage(w io.Writer) {
	fmt.Fprintf(w, "pyglass looks into live Python processes (CPython 2.7, 3.6 to 3.15).\n\nUsage:\n  pyglass COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'pyglass COMMAND --help' for a command's options, 'pyglass --version' for the version.\n\n%s", exitCodesHelp)
}

// Main runs pyglass with args (without the program name) and returns the
// exit status.
func Main(args []string, io IO) ExitCode {
	if len(args) > 0 && args[0] == "shell" && io.IsTerm {
		// The interactive shell needs its terminal as an *os.File.
		return run(args, io)
	}
	out := &checkedWriter{w: io.Out}
	io.Out = out
	return out.status(run(args, io), io)
}

func run(args []string, io IO) ExitCode {
	if len(args) == 0 {
		usage(io.Err)
		return ExitUsage
	}
	name := args[0]
	if name == "--version" || name == "-V" {
		name = "version"
	}
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, io)
		}
		usage(io.Out)
		return ExitOK
	}
	for _, c := range commands {
		if c.name == name {
			if name == "version" {
				// Nothing to stop or clean up: the signals keep
				// their default effect, and no thread is started
				// to take them.
				return c.run(context.Background(), args[1:], io)
			}
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
			ctx, stop := signalContext(ctx, sigs...)
			defer stop()
			return c.run(ctx, args[1:], io)
		}
	}
	if strings.HasPrefix(name, "-") {
		fmt.Fprintf(io.Err, "pyglass: unknown option %s (options go after the command)\nUsage: pyglass COMMAND [ARGS]; 'pyglass help' lists the commands\n", name)
		return ExitUsage
	}
	fmt.Fprintf(io.Err, "pyglass: unknown command %q\nRun 'pyglass help' for the list of commands.\n", name)
	return ExitUsage
}

// checkedWriter remembers the first error writing the output, after which
// it writes nothing more: a report cut short is not a success.
// It may be written from several goroutines (exec streams its output).
type checkedWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// failed returns the first write error, or nil.
func (c *checkedWriter) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// status is the exit status of a command that returned code, given how
// writing its output went: a reader that went away (EPIPE) ends it quietly
// with the SIGPIPE convention, any other write error is reported and is
// not success.
func (c *checkedWriter) status(code ExitCode, io IO) ExitCode {
	err := c.failed()
	if err == nil || (code != ExitOK && code != ExitRaised && code != ExitInternal) {
		return code
	}
	if errors.Is(err, syscall.EPIPE) {
		return ExitBrokenPipe
	}
	fmt.Fprintf(io.Err, "pyglass: cannot write the output: %s\nhint: check the disk or file the output goes to\n", oneLine(err.Error()))
	return ExitInternal
}

// signalContext is signal.NotifyContext with the signals registered in
// the background. The runtime's first signal.Notify waits for a thread
// of its own to start, which took 0.2 to 5 ms here (longer when the
// target keeps the other core busy), at the start of every command,
// whether or not it ever sees a signal. A command that acts on a process
// calls signalsReady first (attach does, after its reads of /proc and of
// the interpreter's image, during which the registration is under way).
// Until then a signal has its default effect: pyglass ends, having
// changed nothing. Like NotifyContext's, the registration stays after
// the first signal, until stop.
func signalContext(parent context.Context, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ready := make(chan struct{})
	ctx = context.WithValue(ctx, signalsKey{}, (<-chan struct{})(ready))
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() {
		signal.Notify(ch, sigs...)
		close(ready)
		select {
		case <-ch:
			cancel()
			<-done
		case <-done:
		}
		signal.Stop(ch)
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			close(done)
			cancel()
		})
	}
}

type signalsKey struct{}

// signalsReady waits until the signals of ctx's command are registered
// (see signalContext); at once for a ctx that has none.
func signalsReady(ctx context.Context) {
	if c, _ := ctx.Value(signalsKey{}).(<-chan struct{}); c != nil {
		<-c
	}
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
// its flags (spelled --flag, as in the synopsis) and the exit codes. The
// flag package prints nothing itself: parse reports a bad flag in one line.
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
		if opts := options(fs); opts != "" {
			fmt.Fprintf(w, "\nOptions:\n%s", opts)
		}
		fmt.Fprintf(w, "\n%s", exitCodesHelp)
	}
	return fs
}

// dashed spells a flag as the synopsis does: -c, --json.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// argNames name the value of flags whose type says too little.
var argNames = map[string]string{"c": "CODE", "o": "FILE", "namespace": "fresh|main"}

// options lists fs's flags, one a line: "  --top N   what it does (default 20)".
func options(fs *flag.FlagSet) string {
	type row struct{ left, right string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		left := dashed(f.Name)
		switch a, ok := argNames[f.Name]; {
		case ok:
			left += " " + a
		case arg == "int":
			left += " N"
		case arg != "":
			left += " " + strings.ToUpper(arg)
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" {
			usage += " (default " + d + ")"
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r.left, r.right)
	}
	return b.String()
}

// flagNameRE finds a flag in the flag package's error messages.
var flagNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(^|[ :])-{1,2}([A-Za-z][A-Za-z0-9_-]*)`) })

// flagError rewords the flag package's error in the synopsis's spelling.
func flagError(err error) string {
	msg := err.Error()
	for from, to := range map[string]string{
		"flag provided but not defined: ": "unknown option ",
		"flag needs an argument: ":        "missing value for ",
	} {
		msg = strings.Replace(msg, from, to, 1)
	}
	return flagNameRE().ReplaceAllStringFunc(msg, func(m string) string {
		sub := flagNameRE().FindStringSubmatch(m)
		return sub[1] + dashed(sub[2])
	})
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

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
	usage := fs.Usage
	fs.Usage = func() {} // parse prints its own one-line error
	defer func() { fs.Usage = usage }()
	fs.SetOutput(ioDiscard{})
	for {
		if err := fs.Parse(args); err != nil {
			fs.Usage = usage
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(io.Out)
				fs.Usage()
				return nil, ExitOK, false
			}
			fmt.Fprintf(io.Err, "pyglass %s: %s\nUsage: pyglass %s %s\n", fs.Name(), flagError(err), fs.Name(), lookup(fs.Name()).args)
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
// An error pyglass cannot classify says so ("internal error", exit 6) and
// does not blame the target.
func fail(io IO, err error) ExitCode {
	if cw, ok := io.Out.(*checkedWriter); ok && cw.failed() != nil {
		// The command failed because its output could not be written
		// (exec's stream): Main reports that, once.
		return ExitInternal
	}
	code := codeOf(err)
	msg := oneLine(err.Error())
	hint := pyglass.HintOf(err)
	if code == ExitInternal && !errors.Is(err, pyglass.ErrNoSpace) {
		msg = "internal error: " + strings.TrimPrefix(msg, pyglass.ErrInternal.Error()+": ")
		if hint == "" {
			hint = "pyglass could not classify this failure: it is not a verdict on the target; please report it with 'pyglass info PID'"
		}
	}
	fmt.Fprintf(io.Err, "pyglass: %s\n", msg)
	if hint != "" {
		fmt.Fprintf(io.Err, "hint: %s\n", hint)
	}
	return code
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
	return ExitInternal
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.ReplaceAll(s, "\n", "; ")
}
