package pyglass

import (
	"context"

	"github.com/pyglass/pyglass/cpython"
)

// Tasks reads every asyncio task from the core, as Process.Tasks does
// from a live process (3.7 to 3.15). A sleep's deadline is given, not the
// time left (the core has no clock to measure it against).
func (c *Core) Tasks(ctx context.Context, opt TaskOptions) (_ *TaskDump, err error) {
	defer guard(&err, "tasks", c.c.PID)
	v := c.py.Version
	if v.Major != 3 || v.Minor < 7 || v.Minor > 15 {
		return nil, errorf(ErrNotPython, "pyglass reads asyncio tasks of Python 3.7 to 3.15",
			"core of process %d: Python %s: reading its asyncio tasks is not supported", c.c.PID, v)
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
	m := c.m
	dump := &TaskDump{PID: c.c.PID, Python: PythonRef{Version: v.String(), Path: c.py.Path}, Tasks: []AsyncTask{}, Cycles: [][]string{}}
	rd := newPageCache(m.r)
	same := func(err error) error { return err }
	all, which, interps, err := readAsyncTasks(ctx, rd, m, dbg, c.c.PID, same)
	if err != nil {
		return nil, err
	}
	byTP := map[uint64]int{}
	var tids []int
	for _, t := range c.c.Threads {
		tids = append(tids, t.TID)
		if t.TP != 0 {
			byTP[t.TP] = t.TID
		}
	}
	taskOf := func(tp uint64) (int, bool) { tid, ok := byTP[tp]; return tid, ok }
	tidOf := map[uint64]int{}
	for _, interp := range interps {
		th, _ := cpython.Threads(rd, m.l, interp, cpython.ThreadOptions{Image: &m.img, TIDs: tids, TaskOf: taskOf, SkipNames: true})
		for _, t := range th {
			tidOf[t.Addr] = t.NativeID
		}
	}
	fillTaskDump(dump, all, which, tidOf, opt.All, nil)
	return dump, nil
}
