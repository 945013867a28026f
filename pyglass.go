package pyglass

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/memory"
)

// Process is a Python process pyglass has attached to. Attaching only
// reads /proc and the interpreter's ELF image: the target is neither
// stopped nor traced until an operation needs it, and only for that
// operation. A Process may be used by one goroutine at a time.
type Process struct {
	pid  int
	proc *pyproc.Process
	py   *pyproc.Python

	onWarn   func(string) // see SetWarningHandler
	warnings []string
	// memHook, when set (tests), wraps the reader of the target's
	// memory that Stacks uses.
	memHook func(memory.Reader) memory.Reader
}

// List returns the Python processes on the machine that pyglass may read,
// found by what is mapped in them (renamed binaries and programs that
// embed libpython included).
func List() (_ []Summary, err error) {
	defer guard(&err, "list", 0)
	list, err := pyproc.List()
	if err != nil {
		return nil, convertErr(err)
	}
	out := make([]Summary, 0, len(list))
	for _, s := range list {
		v := "?"
		if s.VersionKnown {
			v = s.Version.String()
		}
		out = append(out, Summary{PID: s.PID, PPID: s.PPID, User: s.User, UID: s.UID, Version: v, Cmdline: s.Cmdline})
	}
	return out, nil
}

// Attach finds the Python interpreter in process pid. It fails with
// ErrNoProcess, ErrNotPython (not Python, zombie, unsupported version) or
// ErrPermission.
func Attach(pid int) (_ *Process, err error) {
	defer guard(&err, "attach", pid)
	if pid == os.Getpid() {
		return nil, errs.Newf(ErrNotPython, "give the PID of a Python process", "process %d is pyglass itself", pid)
	}
	proc, err := pyproc.Inspect(pid)
	if err != nil {
		return nil, convertErr(err)
	}
	if proc.Python == nil {
		return nil, errs.Newf(ErrNotPython, "", "process %d: no Python interpreter found", pid)
	}
	return &Process{pid: pid, proc: proc, py: proc.Python}, nil
}

// PID returns the process ID (in pyglass's PID namespace).
func (p *Process) PID() int { return p.pid }

// convertErr maps the internal packages' errors to the public sentinels,
// keeping their message and hint.
func convertErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return &Error{Kind: classify(err), Msg: err.Error(), Hint: errs.HintOf(err)}
}

// Info returns what pyglass knows about the process, re-reading the
// thread list and state from /proc.
func (p *Process) Info() (info *Info) {
	defer func() {
		if r := recover(); r != nil { // see guard; Info has no error to return
			p.warn(fmt.Sprintf("internal error reading the information of process %d: %v", p.pid, r))
			if info == nil {
				info = &Info{PID: p.pid, Cmdline: []string{}}
			}
		}
	}()
	p.refresh()
	pr := p.proc
	// What a core answers too (the interpreter, the threads) comes from
	// the target; what only a live process has (its user, command line,
	// state, namespaces, tracer, how exec would run) from /proc.
	py, threads := inspect.Info(p.snapshot(nil, false), p.py, p.threadNames())
	info = &Info{
		PID: pr.PID, User: pr.User(), UID: pr.EUID, Cmdline: pr.Cmdline,
		State:        pr.StateName,
		Python:       py,
		Threads:      threads,
		OtherMountNS: pr.OtherMountNS, OtherPIDNS: pr.OtherPIDNS,
		TracerPID: pr.TracerPID,
	}
	if pr.NSPID != pr.PID {
		info.NSPID = pr.NSPID
	}
	if info.Cmdline == nil {
		info.Cmdline = []string{}
	}
	info.ExecMethod, info.ExecReason = p.execPlan()
	info.CanExec = info.ExecReason == ""
	return info
}

// refresh re-reads the process's state and threads from /proc.
func (p *Process) refresh() {
	if fresh, err := pyproc.Inspect(p.pid); err == nil {
		p.proc = fresh
		if fresh.Python != nil {
			p.py = fresh.Python
		}
	} else if errors.Is(err, pyproc.ErrZombie) || errors.Is(err, pyproc.ErrNoProcess) {
		if fresh != nil {
			p.proc = fresh
		} else {
			p.proc.Zombie = true
		}
	}
}

// requiredSymbols are the C API functions exec calls in the target.
var requiredSymbols = []string{"PyThread_start_new_thread", "PyGILState_Ensure", "PyGILState_Release", "PyRun_SimpleString"}

// execPlan says how Exec would run code, or why it cannot.
func (p *Process) execPlan() (method, reason string) {
	pr := p.proc
	switch {
	case pr.Zombie:
		return "", "the process is a zombie"
	case pr.State == 'T' || pr.State == 't':
		if pr.TracerPID == 0 {
			return "", "the process is stopped (SIGSTOP); send it SIGCONT first"
		}
	}
	if pr.TracerPID != 0 {
		return "", fmt.Sprintf("the process is already traced by PID %d%s", pr.TracerPID, commOf(pr.TracerPID))
	}
	var missing []string
	for _, s := range requiredSymbols {
		if _, ok := p.py.Symbol(s); !ok {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return "", "the interpreter does not export " + strings.Join(missing, ", ")
	}
	if os.Geteuid() != 0 && os.Geteuid() != pr.EUID {
		return "", "the process belongs to another user; run pyglass as root"
	}
	method = "ptrace: one thread is held for well under a millisecond to start a new thread that runs the code"
	if v := p.py.Version; v.Major == 3 && v.Minor >= 14 {
		method = "PEP 768 (no ptrace) when a thread is running Python and remote debugging is enabled; else " + method
	}
	return method, ""
}

func commOf(pid int) string {
	comm, err := procfs.New(pid).Comm()
	if err != nil {
		return ""
	}
	return " (" + comm + ")"
}

// Descendants returns the PIDs of pid's child processes, theirs, and so
// on (whether they run Python or not), as /proc shows them now.
func Descendants(pid int) ([]int, error) {
	kids, err := procfs.Descendants(pid)
	if err != nil {
		return nil, &Error{Kind: ErrInternal, Msg: "listing processes", Err: err}
	}
	return kids, nil
}
