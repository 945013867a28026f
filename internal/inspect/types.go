package inspect

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

// CoreInfo describes a core file: why it exists and what process it is
// of. It is StackDump.Core.
type CoreInfo struct {
	File    string `json:"file"`
	PID     int    `json:"pid"`
	Command string `json:"command"` // the command line, cut to 80 bytes by the kernel
	// Executable is the main program's path as the process saw it.
	Executable string `json:"executable"`
	// Reason says why the core exists, in words: "SIGSEGV (address not
	// mapped) at 0x10", "SIGABRT sent by process 42 (uid 1000)", "made on
	// request (no signal)".
	Reason    string `json:"reason"`
	Signal    int    `json:"signal"` // 0 when the core was made on request
	SigCode   int    `json:"si_code"`
	SenderPID int    `json:"sender_pid,omitempty"`
	SenderUID int    `json:"sender_uid,omitempty"`
	FaultAddr uint64 `json:"fault_address,omitempty"`
	// Thread is the thread the signal was delivered to (0 when none).
	Thread   int      `json:"thread,omitempty"`
	Threads  int      `json:"threads"` // OS threads in the core
	Warnings []string `json:"warnings"`
}
