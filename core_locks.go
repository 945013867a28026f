package pyglass

import (
	"context"
	"debug/elf"
	"fmt"
	"runtime"
	"sort"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/ptrace"
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
	regs := c.c.Machine == elf.EM_X86_64 && runtime.GOARCH == "amd64"
	kernel := map[int]taskView{}
	toHost := map[int]int{}
	byTP := map[uint64]int{}
	var tids []int
	for _, t := range c.c.Threads {
		tids = append(tids, t.TID)
		toHost[t.TID] = t.TID
		if t.TP != 0 {
			byTP[t.TP] = t.TID
		}
		tv := taskView{}
		if regs {
			tv.held = &ptrace.Held{TP: t.TP, Syscall: t.Syscall, Args: t.Args}
		}
		kernel[t.TID] = tv
	}
	taskOf := func(tp uint64) (int, bool) { tid, ok := byTP[tp]; return tid, ok }
	interp := interps[len(interps)-1] // the list starts with the newest interpreter
	snap := lockSnap{gil: gilFutexRange(rd, m, interp), kernel: kernel, toHost: toHost}
	snap.threads, _ = cpython.Threads(rd, m.l, interp, cpython.ThreadOptions{Image: &m.img, TIDs: tids, TaskOf: taskOf})
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
