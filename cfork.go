package pyglass

import (
	"context"
	"fmt"
	"time"

	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/procfs"
)

// A process that forks in C without taking the GIL first (a uwsgi master
// respawning a worker, without py-call-uwsgi-fork-hooks) copies the GIL
// as it is at that instant. If a session's thread holds it then, the
// child inherits a GIL held by a thread it does not have: its main
// thread waits for it for good, before serving anything (uwsgi issues
// 1149 and 1369). Nothing pyglass can do in the parent prevents it: the
// user's code holds the GIL while it runs, and the fork can come at any
// time. So a session warns when the agent finds such a forker, and when
// it ends, ends the children forked during it that are stuck so (a uwsgi
// master starts another worker, which forks with no session running).

// maxForkChecks bounds the children forked during one session that are
// looked at.
const maxForkChecks = 16

// stuckRecheck is how long after a child was first seen stuck it is
// looked at again before it is ended.
const stuckRecheck = 200 * time.Millisecond

// forkWatch is the set of the target's children when a session started.
type forkWatch map[int]bool

// watchForks lists the target's children before a session starts.
func (p *Process) watchForks() forkWatch {
	w := forkWatch{}
	for _, c := range procfs.New(p.pid).Children() {
		w[c] = true
	}
	return w
}

// warnCFork warns, at the start of a session, that the target forks in
// C (what: the agent's hello CFork).
func (p *Process) warnCFork(what string) {
	if what != "uwsgi" {
		return
	}
	p.warn(fmt.Sprintf("process %d is a uwsgi master without py-call-uwsgi-fork-hooks: a worker it forks while pyglass's code runs may inherit a GIL held by pyglass's thread and wait for it for good; pyglass ends such a worker after the session (the master starts another). Start uwsgi with --py-call-uwsgi-fork-hooks, or run code in a worker", p.pid))
}

// endStuckForks ends the target's children forked since before that
// wait for a GIL held by a thread they do not have, and says so.
func (p *Process) endStuckForks(before forkWatch) {
	n := 0
	for _, c := range procfs.New(p.pid).Children() {
		if before[c] || n >= maxForkChecks {
			continue
		}
		n++
		child := procfs.New(c)
		st, err := child.Stat()
		if err != nil || st.PPid != p.pid || !gilHeldByGone(c) {
			continue
		}
		// A child that takes the GIL anew right after the fork
		// (PyOS_AfterFork_Child without waiting for the old one) looks
		// the same for a moment: looked at again a while later.
		time.Sleep(stuckRecheck)
		if !gilHeldByGone(c) {
			continue
		}
		if err := child.KillChild(p.pid, st.StartTime); err != nil {
			p.warn(fmt.Sprintf("process %d, forked by process %d in C during the session, waits for good for a GIL held by a thread it does not have; ending it failed (%v): end it with kill -9 %d", c, p.pid, err, c))
			continue
		}
		p.warn(fmt.Sprintf("ended process %d: forked by process %d in C while pyglass's thread held the GIL, it waited for good for a GIL none of its threads could release", c, p.pid))
	}
}

// gilHeldByGone reports whether process pid's GIL is held by a thread
// state whose thread is not in the process (a fork copied it from the
// parent's thread that held the GIL): none of its threads can take it.
func gilHeldByGone(pid int) bool {
	c, err := Attach(pid)
	if err != nil {
		return false
	}
	d, err := c.Stacks(context.Background(), StackOptions{})
	if err != nil {
		return false
	}
	for _, t := range d.Threads {
		if t.HoldsGIL && t.State == inspect.StateGone {
			return true
		}
	}
	return false
}
