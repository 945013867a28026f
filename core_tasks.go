package pyglass

import (
	"context"
	"fmt"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/memory"
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
