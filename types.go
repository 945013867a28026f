package pyglass

import (
	"io"
	"time"
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

// PythonInfo describes the interpreter in a process.
type PythonInfo struct {
	// Version is "X.Y.Z" as read from the target's memory or binary.
	Version string `json:"version"`
	// Path is the file holding the interpreter (the executable or
	// libpython), as the target sees it.
	Path string `json:"path"`
	// Shared is true when the interpreter is a shared libpython, false
	// when it is linked into the executable.
	Shared bool `json:"shared"`
}

// ThreadInfo is one OS thread of the target.
type ThreadInfo struct {
	TID   int    `json:"tid"`
	NSTID int    `json:"ns_tid,omitempty"` // the id inside the target's PID namespace, when different
	Comm  string `json:"comm"`             // the kernel's name for the thread
	Name  string `json:"name,omitempty"`   // the Python thread name (threading), when readable
	State string `json:"state"`            // the kernel's state: running, sleeping, stopped, ...
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

// StackOptions configure Stacks.
type StackOptions struct {
	// Locals adds each frame's local variables (short reprs).
	Locals bool
	// NonBlocking reads without pausing the threads: faster and
	// invisible to the target, but the snapshot may be inconsistent.
	NonBlocking bool
	// Native adds each thread's C frames, unwound from its registers
	// while it is paused (not with NonBlocking), merged with its Python
	// frames: each call of the evaluation loop is replaced by the Python
	// frames it runs.
	Native bool
	// NativeAll, with Native, adds the threads Python does not know
	// (threads a C library started), with their C frames only.
	NativeAll bool
}

// StackDump is every Python thread's stack.
type StackDump struct {
	PID     int           `json:"pid"`
	Python  PythonRef     `json:"python"`
	Threads []ThreadStack `json:"threads"`
	// Core describes the core file the stacks were read from (nil for a
	// live process).
	Core *CoreInfo `json:"core,omitempty"`
}

// PythonRef names the interpreter in a StackDump.
type PythonRef struct {
	Version string `json:"version"`
	Path    string `json:"path"`
}

// ThreadStack is one thread of a StackDump.
type ThreadStack struct {
	TID         int     `json:"tid"`  // a task of the process, 0 when unknown (a thread state of no task)
	Name        string  `json:"name"` // threading's name, else the kernel's (comm); AgentThreadName for pyglass's agent
	Main        bool    `json:"main"`
	HoldsGIL    bool    `json:"holds_gil"`
	State       string  `json:"state"`       // running, waiting for the GIL, idle (in a system call), stopped, gone (a state of no thread)
	Interpreter int     `json:"interpreter"` // 0: the main interpreter; others are subinterpreters
	Frames      []Frame `json:"frames"`
	Error       string  `json:"error"` // "" when the thread was read
	// NativeApart holds the native frames (outermost first) when they
	// could not be merged with the Python ones (NativeNote says why);
	// merged, they are in Frames.
	NativeApart []Frame `json:"native_apart,omitempty"`
	// NativeNote says what went wrong with the native frames, if anything.
	NativeNote string `json:"native_note,omitempty"`
	// NotPython marks a thread Python does not know (StackOptions.NativeAll):
	// its frames are all native.
	NotPython bool `json:"not_python,omitempty"`
	// WaitingFor is what the thread waits for, as Locks says it, when it
	// is blocked (read paused only; nil otherwise).
	WaitingFor *WaitFor `json:"waiting_for,omitempty"`
}

// Frame is one Python frame, outermost first in ThreadStack.Frames.
type Frame struct {
	Function string            `json:"function"`
	File     string            `json:"file"`
	Line     int               `json:"line"`
	Locals   map[string]string `json:"locals,omitempty"`
	// Source is the source line when the file is readable as the target
	// sees it.
	Source string `json:"-"`
	// Native marks a C frame (StackOptions.Native): Function is its
	// symbol ("" when the file names none), File the program or library
	// it is in, Line 0, Address the instruction (a return address but for
	// the innermost frame), Offset the distance from the function's start
	// (when Function is "", the address in the file's own terms, as
	// addr2line takes it: less the load bias).
	Native  bool   `json:"native,omitempty"`
	Address uint64 `json:"address,omitempty"`
	Offset  uint64 `json:"offset,omitempty"`

	entry      bool   // the first frame its evaluation loop call ran (cpython.Frame.Entry)
	shim       uint64 // the entry frame below it (cpython.Frame.Shim)
	spLo, spHi uint64 // a native frame's stack: from its stack pointer to its caller's
}
