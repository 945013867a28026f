package pyglass

import (
	"io"
	"time"

	"github.com/pyglass/pyglass/internal/inspect"
)

// Summary is one Python process found by List.
type Summary struct {
	PID     int      `json:"pid"`
	PPID    int      `json:"ppid"` // the parent's PID; 0 when it is outside pyglass's PID namespace
	User    string   `json:"user"`
	UID     int      `json:"uid"`
	Version string   `json:"version"`
	Cmdline []string `json:"cmdline"`
}

// Info is what pyglass knows about a process without running code in it.
type Info struct {
	PID          int          `json:"pid"`
	NSPID        int          `json:"ns_pid,omitempty"`
	User         string       `json:"user"`
	UID          int          `json:"uid"`
	Cmdline      []string     `json:"cmdline"`
	State        string       `json:"state"`
	Python       PythonInfo   `json:"python"`
	Threads      []ThreadInfo `json:"threads"`
	OtherMountNS bool         `json:"other_mount_namespace"`
	OtherPIDNS   bool         `json:"other_pid_namespace"`
	TracerPID    int          `json:"tracer_pid,omitempty"`
	// CanExec says whether pyglass can run code in the process, with
	// ExecMethod how, or ExecReason why not.
	CanExec    bool   `json:"can_exec"`
	ExecMethod string `json:"exec_method,omitempty"`
	ExecReason string `json:"exec_reason,omitempty"`
}

// ExecOptions configure Exec.
type ExecOptions struct {
	// Filename is shown in tracebacks: "<string>" by default.
	Filename string
	// MainNamespace runs the code in __main__'s globals instead of a
	// fresh namespace (__name__ "__pyglass__"). A fresh namespace stays
	// valid as long as anything the code left behind refers to it.
	MainNamespace bool
	// Stdout and Stderr receive what the code writes to sys.stdout and
	// sys.stderr (nil discards).
	Stdout, Stderr io.Writer
	// Timeout bounds the whole call (30 s when zero). If the code cannot
	// start in time (a thread holds the GIL), nothing runs later. If it
	// runs too long, KeyboardInterrupt is raised in its thread (only
	// there); Exec returns ErrTimeout saying whether it stopped within 2
	// s (a call that does not check for interrupts, such as a sleep, a
	// lock or I/O, delays it until it returns).
	Timeout time.Duration
	// Interrupt, if set, receives the user's interrupt requests (Ctrl-C)
	// while the code runs: the first raises KeyboardInterrupt in the
	// code's thread, never in the target's own threads, as Ctrl-C does in
	// python (the traceback goes to Stderr, Raised is set). If the code
	// has not stopped 2 s later, Notice is told, and the next request
	// leaves it running: Exec returns an error wrapping
	// context.Canceled.
	Interrupt <-chan struct{}
	// Notice, if set, receives a line for the user (without newline).
	Notice func(string)
	// Progress, when set, receives short status lines while pyglass
	// waits, and "" when the wait is over.
	Progress func(string)
}

// ExecResult is the outcome of code run by Exec.
type ExecResult struct {
	// Raised is true when the code raised (its traceback went to Stderr)
	// or ended with a non-zero SystemExit.
	Raised bool `json:"raised"`
	// Status is the exit status python would give: 0, 1 when the code
	// raised, a SystemExit's code modulo 256 (a message is 1).
	Status int `json:"status"`
	// Thread is the native id of the target thread that ran the code.
	Thread int `json:"thread"`
	// Method says how the code was started in the target.
	Method string `json:"method"`
	// Held is how long a thread of the target was held stopped.
	Held time.Duration `json:"held_ns"`
}

// The reports' types are defined with the code that fills them, in
// internal/inspect (their fields are documented there, and go doc shows
// them as inspect.X); these are the same types.
type (
	// PythonInfo describes the interpreter in a process.
	PythonInfo = inspect.PythonInfo
	// ThreadInfo is one OS thread of the target.
	ThreadInfo = inspect.ThreadInfo
	// StackOptions configure Stacks: Locals, NonBlocking (no pause),
	// Native (C frames merged with the Python ones), NativeAll.
	StackOptions = inspect.StackOptions
	// StackDump is every Python thread's stack (Core set when read
	// from a core file).
	StackDump = inspect.StackDump
	// PythonRef names the interpreter in a StackDump.
	PythonRef = inspect.PythonRef
	// ThreadStack is one thread of a StackDump: its ids, name, GIL,
	// state, frames (outermost first) or the error that kept them
	// from being read, and what it waits for.
	ThreadStack = inspect.ThreadStack
	// Frame is one Python frame (or, with StackOptions.Native, a C
	// frame), outermost first in ThreadStack.Frames.
	Frame = inspect.Frame
	// CoreInfo describes a core file: why it exists and what process
	// it is of. It is StackDump.Core.
	CoreInfo = inspect.CoreInfo
)

// AgentThreadName is the name Stacks gives the thread of pyglass's
// agent (the thread that runs Exec's code in the target).
const AgentThreadName = inspect.AgentThreadName
