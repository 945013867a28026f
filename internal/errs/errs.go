// Package errs is pyglass's one error model: the kinds of failure every
// layer reports (a process gone, access refused, not a Python process
// pyglass can read, a time limit, another pyglass at work, pyglass's own
// failure) and Error, which carries a kind, a finer reason, the process,
// a one-line explanation and a hint. The public package re-exports them;
// the packages below it return them, so nothing has to translate one
// layer's errors into another's. It imports only the standard library.
package errs

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds. Every error pyglass returns matches exactly one of them with
// errors.Is (Internal when pyglass cannot say which).
var (
	// NoProcess: the PID does not exist, or the process exited.
	NoProcess = errors.New("no such process")
	// NotPython: the process does not contain a CPython interpreter
	// pyglass can work with (not Python, zombie, unsupported version).
	NotPython = errors.New("not a Python process pyglass can work with")
	// Permission: the kernel refused access (not root and another user,
	// missing CAP_SYS_PTRACE, Yama ptrace_scope, already traced).
	Permission = errors.New("permission denied")
	// Timeout: the operation did not complete within its time limit.
	Timeout = errors.New("timed out")
	// Busy: another pyglass is working on the same process.
	Busy = errors.New("target busy")
	// Internal: pyglass failed for a reason it cannot classify (a bug, a
	// condition of this machine it does not know, or a target's memory no
	// check foresaw); the operation was abandoned and the target left
	// running. It says nothing about the target.
	Internal = errors.New("internal error")
)

// Error is the detailed form of a pyglass error.
type Error struct {
	// Kind is one of the kinds above.
	Kind error
	// Sub, when set, is a finer reason within Kind (a zombie, an
	// unsupported version, ... as a sentinel of the package that found
	// it); errors.Is matches it too.
	Sub error
	// PID is the process the error is about, 0 when none is named.
	PID int
	// Msg is the one-line explanation; when empty, Sub's or Kind's text.
	Msg string
	// Detail adds what was found, after the explanation.
	Detail string
	// Hint says what to try, "" when nothing.
	Hint string
	// Err is the underlying cause, if any.
	Err error
}

// Error returns "process PID: explanation: detail: cause", each part
// present only when set. The hint is not included (see HintOf).
func (e *Error) Error() string {
	var b strings.Builder
	if e.PID != 0 {
		fmt.Fprintf(&b, "process %d: ", e.PID)
	}
	switch {
	case e.Msg != "":
		b.WriteString(e.Msg)
	case e.Sub != nil:
		b.WriteString(e.Sub.Error())
	case e.Kind != nil:
		b.WriteString(e.Kind.Error())
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is e's Kind or Sub.
func (e *Error) Is(target error) bool {
	return target != nil && (target == e.Kind || target == e.Sub)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// HintOf returns the hint of the first Error in err's chain, or "".
func HintOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Hint
	}
	return ""
}

// KindOf returns the kind of the first Error in err's chain that has
// one, nil when there is none.
func KindOf(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return nil
}

// Newf is an Error of kind with a hint and a formatted message.
func Newf(kind error, hint string, format string, a ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...), Hint: hint}
}
