package pyproc

import (
	"errors"
	"fmt"
	"os"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
)

// Its errors are *errs.Error: the kind (errs.NoProcess, errs.Permission,
// errs.NotPython) and, for errs.NotPython, the finer reason as Sub, one
// of these sentinels (matched with errors.Is).
var (
	// ErrNoProcess is returned when there is no process with the PID.
	ErrNoProcess = errs.NoProcess
	// ErrZombie: the process has exited but not been reaped: it has no
	// memory left to inspect.
	ErrZombie = errors.New("process is a zombie")
	// ErrNotPython: no mapped file of the process holds a Python
	// interpreter.
	ErrNotPython = errors.New("not a Python process")
	// ErrUnsupportedVersion: an interpreter pyglass does not support
	// (only 2.7 and 3.6 to 3.15 are).
	ErrUnsupportedVersion = errors.New("unsupported Python version")
	// ErrPermission is returned when the process's files or memory cannot
	// be read with our privileges.
	ErrPermission = errs.Permission
)

// classify turns an error from reading /proc into a typed *Error.
func classify(pid int, what string, err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	switch {
	case errors.Is(err, procfs.ErrNoProcess):
		return &errs.Error{PID: pid, Kind: errs.NoProcess, Hint: "check the PID with `pyglass ps`"}
	case errors.Is(err, os.ErrPermission):
		return &errs.Error{PID: pid, Kind: errs.Permission, Detail: what, Err: err, Hint: permissionHint()}
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
