package pyglass

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
)

// Sentinel errors. Every error pyglass returns matches exactly one of them
// with errors.Is (ErrInternal when pyglass cannot say which), and carries a one-line explanation (and, where there is
// one, a hint) in its message. They are the kinds of internal/errs, the
// one error model every layer of pyglass returns.
var (
	// ErrNoProcess: the PID does not exist, or the process exited.
	ErrNoProcess = errs.NoProcess
	// ErrNotPython: the process does not contain a CPython interpreter
	// pyglass can work with (not Python, zombie, unsupported version).
	ErrNotPython = errs.NotPython
	// ErrPermission: the kernel refused access (not root and another
	// user, missing CAP_SYS_PTRACE, Yama ptrace_scope, already traced).
	ErrPermission = errs.Permission
	// ErrTimeout: the operation did not complete within its time limit.
	ErrTimeout = errs.Timeout
	// ErrBusy: another pyglass is working on the same process.
	ErrBusy = errs.Busy
	// ErrInternal: pyglass failed for a reason it cannot classify (a bug,
	// a condition of this machine it does not know, or a target's memory
	// no check foresaw); the operation was abandoned and the target left
	// running. It says nothing about the target: it is never reported as
	// ErrNotPython.
	ErrInternal = errs.Internal
)

// Error is the detailed form of a pyglass error: Kind is one of the
// sentinels above, Sub a finer reason when there is one (a zombie, an
// unsupported version), PID the process, Msg the one-line explanation
// and Hint what to try.
type Error = errs.Error

// HintOf returns the hint attached to err, or "". For a permission error
// on a machine whose Yama ptrace_scope forbids pyglass to trace, the hint
// also says how to lift it.
func HintOf(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return ""
	}
	h := e.Hint
	if e.Kind != ErrPermission || strings.Contains(h, "sysctl") {
		return h
	}
	if scope, ok := yamaScope(); ok {
		if a := yamaAdvice(scope, hasCapPtrace()); a != "" {
			if h != "" {
				h += "; "
			}
			h += a
		}
	}
	return h
}

// yamaScope reads kernel.yama.ptrace_scope; false when Yama is absent.
var yamaScope = procfs.PtraceScope

// hasCapPtrace reports whether pyglass runs with CAP_SYS_PTRACE effective.
var hasCapPtrace = func() bool {
	st, err := procfs.Self().Status()
	return err == nil && st.HasCap(capSysPtrace)
}

const capSysPtrace = 19

// yamaAdvice says what to do when Yama's ptrace_scope keeps pyglass from
// tracing (and so from reading the memory of) a process, or "" when it
// does not: 0 is classic ptrace, 1 (Ubuntu's default) lets a process trace
// only its descendants, 2 only CAP_SYS_PTRACE trace, 3 none until reboot.
func yamaAdvice(scope int, capPtrace bool) string {
	switch {
	case scope <= 0, scope < 3 && capPtrace:
		return ""
	case scope == 1:
		return "Yama ptrace_scope is 1 (a process may trace only its own children): run pyglass with sudo (or CAP_SYS_PTRACE: sudo setcap cap_sys_ptrace+ep pyglass), or allow same-user tracing with 'sudo sysctl kernel.yama.ptrace_scope=0' (until reboot)"
	case scope == 2:
		return "Yama ptrace_scope is 2 (only CAP_SYS_PTRACE may trace): run pyglass with sudo or give it CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep pyglass), or 'sudo sysctl kernel.yama.ptrace_scope=0'"
	}
	return fmt.Sprintf("Yama ptrace_scope is %d: no process may trace another, not even root, and the setting cannot be lowered until the machine reboots (set kernel.yama.ptrace_scope lower in /etc/sysctl.d and reboot)", scope)
}

// classify maps an internal package's error to its public kind. What it
// does not recognise is ErrInternal: an unexpected failure is pyglass's
// to explain, never a verdict that the target is not Python.
func classify(err error) error {
	if k := errs.KindOf(err); k != nil {
		return k
	}
	// (the lower layers' sentinels for these are the kinds themselves)
	for _, k := range []error{ErrNoProcess, ErrPermission} {
		if errors.Is(err, k) {
			return k
		}
	}
	return ErrInternal
}
