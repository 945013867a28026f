// Package shell is the user-facing client of an interactive Python shell
// running inside a target process (the agent's shell op, see package
// agent).
//
// On a terminal it edits lines with github.com/chzyer/readline, keeps a
// history file and shows the agent's prompts; Ctrl-C discards the current
// input, and while a statement runs raises KeyboardInterrupt in it (in the
// agent's thread only, never in the target's threads): the traceback and
// the prompt come back and the session goes on. Ctrl-D or exit() ends the
// session. Without a terminal it runs its input as python runs a script
// piped to it, each statement as soon as it is complete (so it can be
// driven through pipes), and prints no banner and no prompts.
package shell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/chzyer/readline"
	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/internal/agent"
)

// Options configures Run.
type Options struct {
	// Conn is a connection to an agent that has not received a request
	// yet; Run starts the shell on it.
	Conn *agent.Conn
	// MainNamespace runs the statements in __main__.__dict__ instead of a
	// fresh namespace.
	MainNamespace bool

	// In, Out and Err are the user's streams. Terminal mode is used when
	// In and Out are both terminals (*os.File), unless NoTerminal is set.
	In         io.Reader
	Out, Err   io.Writer
	NoTerminal bool

	// Interrupt receives the user's interrupt requests (see
	// agent.AwaitOptions); nil: Run catches SIGINT itself (Interrupts).
	Interrupt <-chan struct{}

	// HistoryFile is where terminal mode keeps its history; empty means
	// DefaultHistoryFile(); "-" disables the history file.
	HistoryFile string

	// For the banner (terminal mode only) and messages.
	PID        int
	Thread     int // the agent's thread
	Version    string
	Executable string
}

// DefaultHistoryFile returns $XDG_STATE_HOME/pyglass/history, or
// ~/.local/state/pyglass/history, or "" if neither can be determined.
func DefaultHistoryFile() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "pyglass", "history")
}

// Banner returns the text shown when a terminal session starts.
func Banner(pid int, version, executable string) string {
	return fmt.Sprintf("pyglass shell in process %d: Python %s (%s)\n"+
		"Statements run inside the target. exit() or Ctrl-D leaves; the target keeps running.\n",
		pid, version, executable)
}

// ErrLeft is returned (wrapped) when the user left a session whose
// statement did not stop after Ctrl-C: it is still running.
var ErrLeft = errors.New("left the session")

// Run starts the shell on o.Conn and serves it until the user or the code
// ends it. Returns the session's exit status (0, or the exit() code; for
// piped input 1 if it raised), or an error if the connection failed
// (agent.ErrGone if the agent vanished) or the user left (ErrLeft). Run
// closes o.Conn only when the user leaves.
func Run(o Options) (int, error) {
	if o.Conn == nil {
		return 0, errors.New("starting the shell: no agent connection")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Err == nil {
		o.Err = o.Out
	}
	in, inTTY := o.In.(*os.File)
	out, outTTY := o.Out.(*os.File)
	if !o.NoTerminal && inTTY && outTTY && readline.IsTerminal(int(in.Fd())) && readline.IsTerminal(int(out.Fd())) {
		if err := o.Conn.StartShell(o.MainNamespace); err != nil {
			return 0, err
		}
		return runTerminal(o, in, out)
	}
	return runScript(o)
}

func (o Options) interrupts() (<-chan struct{}, func()) {
	if o.Interrupt != nil {
		return o.Interrupt, func() {}
	}
	return Interrupts()
}

// await runs one exchange (read) while Ctrl-C interrupts the code.
// Requests from before it (no code ran then) are dropped.
func await(o Options, intr <-chan struct{}, read func() error) error {
	for drained := false; !drained; {
		select {
		case <-intr:
		default:
			drained = true
		}
	}
	out, err := o.Conn.Await(context.Background(), read, agent.AwaitOptions{
		Interrupt: intr,
		OnStuck: func() {
			fmt.Fprintf(o.Err, "\npyglass: the code has not stopped %s after KeyboardInterrupt: thread %d is in a call that does not check for interrupts (C code, a sleep, a lock, I/O) and stops when it returns; Ctrl-C again leaves the session, the code still running\n", agent.StopWait, o.Thread)
		},
	})
	if out == agent.Left {
		return fmt.Errorf("%w; the code is still running in process %d (thread %d)", ErrLeft, o.PID, o.Thread)
	}
	return err
}

// runScript feeds the input line by line, as a script, and prints only
// outputs.
func runScript(o Options) (int, error) {
	c := o.Conn
	if err := c.StartScript(o.MainNamespace); err != nil {
		return 0, err
	}
	intr, stop := o.interrupts()
	defer stop()
	var done bool
	read := func() error {
		var err error
		_, done, err = c.ReadOutput(o.Out, o.Err)
		return err
	}
	if err := await(o, intr, read); err != nil {
		return 0, err
	}
	var sc *bufio.Scanner
	if o.In != nil {
		sc = bufio.NewScanner(o.In)
		sc.Buffer(make([]byte, 64<<10), agent.MaxFrame)
	}
	for !done {
		if sc == nil || !sc.Scan() {
			if sc != nil {
				if err := sc.Err(); err != nil {
					fmt.Fprintf(o.Err, "pyglass: reading input: %v\n", err)
				}
			}
			if err := c.EndShell(); err != nil {
				return 0, err
			}
		} else if err := c.SendLine(sc.Text()); err != nil {
			return 0, err
		}
		if err := await(o, intr, read); err != nil {
			return 0, err
		}
	}
	st, _ := c.ExitStatus()
	return st, nil
}

// runTerminal runs the interactive loop with line editing.
func runTerminal(o Options, in, out *os.File) (int, error) {
	c := o.Conn
	hist := o.HistoryFile
	if hist == "" {
		hist = DefaultHistoryFile()
	}
	if hist == "-" {
		hist = ""
	}
	if hist != "" {
		if err := os.MkdirAll(filepath.Dir(hist), 0o700); err != nil {
			hist = ""
		}
	}
	fd := int(in.Fd())
	var raw *readline.State
	cfg := &readline.Config{
		Prompt:          agent.PromptPrimary,
		HistoryFile:     hist,
		Stdin:           io.NopCloser(in),
		Stdout:          out,
		Stderr:          o.Err,
		InterruptPrompt: "^C",
		EOFPrompt:       "\n",
		FuncIsTerminal:  func() bool { return true },
		FuncMakeRaw: func() error {
			st, err := readline.MakeRaw(fd)
			if err == nil {
				raw = st
			}
			return err
		},
		FuncExitRaw: func() error {
			if raw == nil {
				return nil
			}
			return readline.Restore(fd, raw)
		},
		FuncGetWidth: func() int {
			ws, err := unix.IoctlGetWinsize(int(out.Fd()), unix.TIOCGWINSZ)
			if err != nil || ws.Col == 0 {
				return 80
			}
			return int(ws.Col)
		},
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		return 0, fmt.Errorf("starting line editing: %w", err)
	}
	defer rl.Close()

	// Ctrl-C while a statement runs reaches pyglass as SIGINT (the
	// terminal is not in raw mode then): it interrupts the statement.
	intr, stop := o.interrupts()
	defer stop()

	fmt.Fprint(out, Banner(o.PID, o.Version, o.Executable))
	prompt, done, err := c.ReadOutput(out, o.Err)
	if err != nil {
		return 0, err
	}
	for !done {
		rl.SetPrompt(prompt)
		line, rerr := rl.Readline()
		switch {
		case rerr == readline.ErrInterrupt:
			// Drop the line being typed and any pending block.
			err = c.Interrupt()
		case rerr == io.EOF:
			err = c.EndShell()
		case rerr != nil:
			return 0, fmt.Errorf("reading input: %w", rerr)
		default:
			err = c.SendLine(line)
		}
		if err != nil {
			return 0, err
		}
		err = await(o, intr, func() error {
			var err error
			prompt, done, err = c.ReadOutput(out, o.Err)
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	st, _ := c.ExitStatus()
	return st, nil
}
