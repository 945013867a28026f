package pyglass

import (
	"context"

	"github.com/pyglass/pyglass/internal/inspect"
)

// Tasks reads every asyncio task from the core, as Process.Tasks does
// from a live process (3.7 to 3.15), with the same read. A sleep's
// deadline is given, not the time left (the core has no clock to
// measure it against).
func (c *Core) Tasks(ctx context.Context, opt TaskOptions) (_ *TaskDump, err error) {
	defer guard(&err, "tasks", c.c.PID)
	return inspect.CoreTasks(ctx, c.c.Target(), c.m, c.py, opt)
}
