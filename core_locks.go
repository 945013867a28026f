package pyglass

import (
	"context"
	"fmt"
)

// Locks is Process.Locks on a core file: what each thread waited for when
// the core was made, who held it, and the cycles. The system call each
// thread was in comes from its saved registers (x86-64 cores read on
// x86-64; elsewhere every wait is unknown); the processes and descriptors
// waited on are not named (the core has no /proc), and no wait has a
// since.
func (c *Core) Locks(ctx context.Context) (_ *LockReport, err error) {
	defer guard(&err, "locks", c.c.PID)
	snap, rd, _, err := readLockSnap(c.c.Target(), c.m, fmt.Sprintf("core of process %d", c.c.PID), func(err error) error { return err })
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var p *Process // no live process: nothing named through /proc
	rep := newLockReport(c.c.PID, p.analyseLocks(rd, c.m, snap), nil)
	rep.Core = c.Info()
	return rep, nil
}
