package pyglass

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error pyglass returns matches at most one of them
// with errors.Is, and carries a one-line explanation (and, where there is
// one, a hint) in its message.
var (
	// ErrNoProcess: the PID does not exist, or the process exited.
	ErrNoProcess = errors.New("no such process")
	// ErrNotPython: the process does not contain a CPython interpreter
	// pyglass can work with (not Python, zombie, unsupported version).
	ErrNotPython = errors.New("not a Python process pyglass can work with")
	// ErrPermission: the kernel refused access (not root and another
	// user, missing CAP_SYS_PTRACE, Yama ptrace_scope, already traced).
	ErrPermission = errors.New("permission denied")
	// ErrTimeout: the operation did not complete within its time limit.
	ErrTimeout = errors.New("timed out")
	// ErrBusy: another pyglass is working on the same process.
	ErrBusy = errors.New("target busy")
	// ErrInternal: pyglass failed in an unforeseen way (a bug); the
	// operation was abandoned and the target left running.
	ErrInternal = errors.New("internal error")
)

// Error is the detailed form of a pyglass error: Kind is one of the
// sentinels above, Msg the one-line explanation and Hint what to try.
type Error struct {
	Kind error
	Msg  string
	Hint string
	Err  error // underlying cause, if any
}

func (e *Error) Error() string {
	s := e.Msg
	if s == "" {
		s = e.Kind.Error()
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

func errorf(kind error, hint string, format string, a ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...), Hint: hint}
}

// HintOf returns the hint attached to err, or "".
func HintOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Hint
	}
	return ""
}
