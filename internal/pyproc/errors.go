package pyproc

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pyglass/pyglass/internal/procfs"
)

var (
	// ErrNoProcess is returned when there is no process with the PID.
	ErrNoProcess = procfs.ErrNoProcess
	// ErrZombie is returned for a process that has exited but not been
	// reaped: it has no memory left to inspect.
	ErrZombie = errors.New("process is a zombie")
	// ErrNotPython is returned when no mapped file of the process holds a
	// Python interpreter.
	ErrNotPython = errors.New("not a Python process")
	// ErrUnsupportedVersion is returned for an interpreter pyglass does not
	// support (only 2.7 and 3.6 to 3.15 are).
	ErrUnsupportedVersion = errors.New("unsupported Python version")
	// ErrPermission is returned when the process's files or memory cannot
	// be read with our privileges.
	ErrPermission = errors.New("permission denied")
)

// Error is a failure to inspect one process. It matches its sentinel
// (ErrNotPython, ...) with errors.Is and carries detail and a hint.
type Error struct {
	PID    int
	Err    error  // one of the sentinels above
	Detail string // what was found, on one line
	Hint   string // what the user can do, or ""
	Cause  error  // the underlying error, or nil
}

// Error returns a one-line message: "process 42: not a Python process:
// detail". The hint is not included; see HintOf.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "process %d: %v", e.PID, e.Err)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Cause != nil {
		b.WriteString(": " + e.Cause.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel and the cause.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// HintOf returns the hint carried by err, or "".
func HintOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Hint
	}
	return ""
}

// classify turns an error from reading /proc into a typed *Error.
func classify(pid int, what string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	switch {
	case errors.Is(err, procfs.ErrNoProcess):
		return &Error{PID: pid, Err: ErrNoProcess, Hint: "check the PID with `pyglass ps`"}
	case errors.Is(err, os.ErrPermission):
		return &Error{PID: pid, Err: ErrPermission, Detail: what, Cause: err, Hint: permissionHint()}
	}
	return fmt.Errorf("process %d: %s: %w", pid, what, err)
}

// permissionHint says why reading another process may be refused.
func permissionHint() string {
	if os.Geteuid() != 0 {
		// pyglass.HintOf adds what to do about Yama's ptrace_scope.
		return "run pyglass as the target's user, or as root (CAP_SYS_PTRACE)"
	}
	return "even root was refused: a security module (SELinux, AppArmor) or a missing CAP_SYS_PTRACE in this container"
}
