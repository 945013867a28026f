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
		// A core's mappings never fail to list: no error to convert.
		if dbg, err = asyncioDebugOn(c.c.Target(), c.py, fmt.Sprintf("core of process %d", c.c.PID), func(err error) error { return err }); err != nil {
			return nil, err
		}
	}
	same := func(err error) error { return err }
	return tasksOn(ctx, c.c.Target(), c.m, c.py, dbg, opt, same, func(read func(memory.Reader) error) (func() float64, error) {
		return nil, read(newPageCache(c.m.r))
	})
}
