package pyglass

import (
	"context"
	"fmt"
	"sort"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/target"
)

// Locks is Process.Locks on a core file: what each thread waited for when
// the core was made, who held it, and the cycles. The system call each
// thread was in comes from its saved registers (x86-64 cores read on
// x86-64; elsewhere every wait is unknown); the processes and descriptors
// waited on are not named (the core has no /proc), and no wait has a
// since.
func (c *Core) Locks(ctx context.Context) (_ *LockReport, err error) {
	defer guard(&err, "locks", c.c.PID)
	m := c.m
	rd := newPageCache(m.r)
	interps, err := cpython.FindInterpreters(rd, m.img, m.l)
	if err == nil && len(interps) == 0 {
		err = cpython.ErrNoInterpreter
	}
	if err != nil {
		return nil, &Error{Kind: ErrNotPython, Msg: fmt.Sprintf("core of process %d: cannot find the Python interpreter in memory", c.c.PID), Err: err}
	}
	tgt := c.c.Target()
	ix := indexThreads(tgt)
	interp := interps[len(interps)-1] // the list starts with the newest interpreter
	snap := lockSnap{gil: gilFutexRange(rd, m, interp), kernel: ix.byTID, toHost: ix.toHost}
	snap.threads, _ = cpython.Threads(rd, m.l, interp, cpython.ThreadOptions{Image: &m.img, TIDs: ix.nsTIDs, TaskOf: target.TaskOf(tgt.Machine(), tgt.Threads())})
	snap.readFrames(rd, m)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var p *Process // no live process: nothing named through /proc
	rep := &LockReport{PID: c.c.PID, Threads: []LockThread{}, Cycles: [][]int{}, Core: c.Info()}
	for _, lt := range p.analyseLocks(rd, m, snap) {
		rep.Threads = append(rep.Threads, lt.out)
	}
	sort.SliceStable(rep.Threads, func(i, j int) bool { return rep.Threads[i].TID < rep.Threads[j].TID })
	rep.Cycles = waitCycles(rep.Threads)
	rep.Verdict = lockVerdict(rep)
	return rep, nil
}
