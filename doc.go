// Package pyglass looks into live CPython processes: it reads their Python
// stacks from memory without running code in them, and runs Python code
// inside them natively (ptrace, no debugger), bringing the code's output,
// traceback and exit status back.
//
// The life cycle is: Attach to a PID (this only inspects /proc and the
// interpreter's ELF image; the target is not stopped), then any number of
// Info, Stacks, Exec or Shell calls, each of which touches the target only
// for its own duration and leaves it running, untraced, with its registers
// and system calls as they were.
//
// Supported: CPython 2.7 and 3.6 to 3.15 on Linux amd64 (arm64 builds),
// with libpython shared or linked into the executable, including targets
// running as other users and in other mount and PID namespaces (pyglass
// must then run as root or with CAP_SYS_PTRACE). A newer 3.x is read with
// the structure offsets it publishes when they pass pyglass's checks;
// free-threaded builds are refused (ErrNotPython).
//
// Errors match one of the sentinels (ErrNoProcess, ErrNotPython,
// ErrPermission, ErrTimeout, ErrBusy, ErrInternal) with errors.Is, and
// HintOf gives a suggestion for the user where there is one. No call
// panics: a bug or a target's memory no check foresaw gives ErrInternal,
// with the target left running. Warnings (one line each, e.g. that the
// target's own structure offsets were unusable and pyglass's table was
// used) go to Process.SetWarningHandler.
package pyglass
