package pyglass

import (
	"context"

	"github.com/pyglass/pyglass/internal/inspect"
)

// Locks is Process.Locks on a core file: what each thread waited for when
// the core was made, who held it, and the cycles. The system call each
// thread was in comes from its saved registers (x86-64 cores read on
// x86-64; elsewhere every wait is unknown); the processes and descriptors
// waited on are not named (the core has no /proc), and no wait has a
// since.
func (c *Core) Locks(ctx context.Context) (_ *LockReport, err error) {
	defer guard(&err, "locks", c.c.PID)
	rep, err := inspect.CoreLocks(ctx, c.c.Target(), c.m)
	if err != nil {
		return nil, err
	}
	rep.Core = c.Info()
	return rep, nil
}
