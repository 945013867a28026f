package pyglass

import (
	"context"

	"github.com/pyglass/pyglass/internal/inspect"
)

// The lock report's types (defined with the analysis, in
// internal/inspect).
type (
	// LockReport is what Locks finds: who waits for what, who holds it.
	LockReport = inspect.LockReport
	// LockVerdict is the report's one-line conclusion.
	LockVerdict = inspect.LockVerdict
	// LockThread is one thread of a LockReport.
	LockThread = inspect.LockThread
	// WaitFor is what a thread waits for.
	WaitFor = inspect.WaitFor
)

// Kinds of waits (WaitFor.Kind).
const (
	WaitLock      = inspect.WaitLock
	WaitJoin      = inspect.WaitJoin
	WaitCondition = inspect.WaitCondition
	WaitEvent     = inspect.WaitEvent
	WaitQueue     = inspect.WaitQueue
	WaitSemaphore = inspect.WaitSemaphore
	WaitGIL       = inspect.WaitGIL
	WaitSyscall   = inspect.WaitSyscall
	WaitChild     = inspect.WaitChild
	WaitIO        = inspect.WaitIO
	WaitNone      = inspect.WaitNone
	WaitUnknown   = inspect.WaitUnknown
)

// Kinds of verdicts (LockVerdict.Kind).
const (
	VerdictDeadlock = inspect.VerdictDeadlock
	VerdictGIL      = inspect.VerdictGIL
	VerdictBlocked  = inspect.VerdictBlocked
	VerdictIdle     = inspect.VerdictIdle
	VerdictRunning  = inspect.VerdictRunning
	VerdictUnknown  = inspect.VerdictUnknown
)

// Locks finds, without running code in the target (its threads paused
// for the snapshot, as for Stacks), what each thread waits for and who
// holds it, and the cycles of the wait-for graph.
func (p *Process) Locks(ctx context.Context) (_ *LockReport, err error) {
	defer guard(&err, "locks", p.pid)
	m, err := p.openCurrent()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return inspect.Locks(ctx, p.live(), m)
}
