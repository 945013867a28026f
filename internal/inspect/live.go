package inspect

import (
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
	"github.com/pyglass/pyglass/target/live"
)

// Live is what the reports know of a live process besides its memory:
// its PID, what Attach found, and what only the facade (the package
// pyglass) does to it: check that it is still the same process, list its
// threads, pause them, tell when it has exited. A report on a core file
// has none (nil).
type Live struct {
	PID  int
	Proc *pyproc.Process
	Py   *pyproc.Python
	// Current checks that the process is still the one Attach
	// inspected (a zombie is errs.NotPython).
	Current func() error
	// Snapshot is the process as a target.Target: its threads as /proc
	// lists them now (with, when withSyscall, the system call each is
	// blocked in), its memory read through mem (nil when not needed).
	Snapshot func(mem memory.Reader, withSyscall bool) *live.Snapshot
	// Freeze pauses every thread (waiting for another pyglass that
	// holds them), with the calling goroutine's thread as the tracer
	// (ptrace.FreezeHere): the same goroutine reads registers and thaws.
	Freeze func() (*ptrace.Frozen, error)
	// Gone returns an errs.NoProcess error when the process has exited, else err.
	Gone func(err error) error
}

// kernelView is the threads of Snapshot(nil, withSyscall), indexed.
func (p *Live) kernelView(withSyscall bool) (views map[int]target.Thread, toHost map[int]int, nsTIDs []int, err error) {
	if err := p.Current(); err != nil {
		return nil, nil, nil, err
	}
	ix := indexThreads(p.Snapshot(nil, withSyscall))
	return ix.byTID, ix.toHost, ix.nsTIDs, nil
}
