package pyglass

import (
	"context"
	"fmt"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// Tasks reads every asyncio task from the core, as Process.Tasks does
// from a live process (3.7 to 3.15), with the same read (tasksOn). A
// sleep's deadline is given, not the time left (the core has no clock to
// measure it against).
func (c *Core) Tasks(ctx context.Context, opt TaskOptions) (_ *TaskDump, err error) {
	defer guard(&err, "tasks", c.c.PID)
	v := c.py.Version
	if err := tasksSupported(v, fmt.Sprintf("core of process %d", c.c.PID)); err != nil {
		return nil, err
	}
	var dbg *cpython.AsyncioDebug
	if v.Minor >= 14 {
		var paths []string
		seen := map[string]bool{}
		for _, f := range c.c.Files {
			if !seen[f.Path] && isAsyncioFile(f.Path, f.Path, c.py.Path) {
				seen[f.Path] = true
				paths = append(paths, f.Path)
			}
		}
		if dbg, err = findAsyncioDebug(c.c.PID, paths, c.c.OpenFile, false); err != nil { // the core's files stay open
			return nil, err
		}
	}
	same := func(err error) error { return err }
	return tasksOn(ctx, c.c.Target(), c.m, c.py, dbg, opt, same, func(read func(memory.Reader) error) (func() float64, error) {
		return nil, read(newPageCache(c.m.r))
	})
}

// tasksSupported says whether pyglass reads the asyncio tasks of Python
// v (3.7 to 3.15); what names the target.
func tasksSupported(v pyproc.Version, what string) error {
	if v.Major != 3 || v.Minor < 7 || v.Minor > 15 {
		return errorf(ErrNotPython, "pyglass reads asyncio tasks of Python 3.7 to 3.15",
			"%s: Python %s: reading its asyncio tasks is not supported", what, v)
	}
	return nil
}

// tasksOn reads the asyncio tasks of tgt, for Process.Tasks and
// Core.Tasks: the interpreters' registries and tasks (readAsyncTasks,
// dbg the .AsyncioDebug section on 3.14+) through the reader snapshot
// gives read (a live process's paused read, a core's memory), then the
// thread each task runs on by the target's threads. snapshot returns
// the loops' clock at the snapshot (nil when unknown: no time left is
// given). gone turns an error into the process's exit when it is gone.
func tasksOn(ctx context.Context, tgt target.Target, m *memoryView, py *pyproc.Python, dbg *cpython.AsyncioDebug, opt TaskOptions, gone func(error) error,
	snapshot func(read func(memory.Reader) error) (now func() float64, err error)) (*TaskDump, error) {
	dump := &TaskDump{PID: tgt.PID(), Python: PythonRef{Version: py.Version.String(), Path: py.Path}, Tasks: []AsyncTask{}, Cycles: [][]string{}}
	var all []cpython.AsyncTask
	var which []int
	var interps []uint64
	now, err := snapshot(func(rd memory.Reader) (err error) {
		all, which, interps, err = readAsyncTasks(ctx, rd, m, dbg, tgt.PID(), gone)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Thread state → thread id, as in StackDump (a thread state does
	// not move: read after the snapshot).
	ix := indexThreads(tgt)
	taskOf := target.TaskOf(tgt.Machine(), tgt.Threads())
	tidOf := map[uint64]int{}
	for _, interp := range interps {
		th, _ := cpython.Threads(m.r, m.l, interp, cpython.ThreadOptions{Image: &m.img, TIDs: ix.nsTIDs, TaskOf: taskOf, SkipNames: true})
		for _, t := range th {
			tidOf[t.Addr] = t.NativeID
			if h, ok := ix.toHost[t.NativeID]; ok {
				tidOf[t.Addr] = h
			}
		}
	}
	fillTaskDump(dump, all, which, tidOf, opt.All, now)
	return dump, nil
}
