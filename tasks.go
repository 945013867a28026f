package pyglass

import (
	"context"
	"fmt"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/inspect"
)

// The asyncio report's types (defined with the read, in internal/inspect).
type (
	// TaskOptions tunes Process.Tasks.
	TaskOptions = inspect.TaskOptions
	// TaskDump is every asyncio task of a process.
	TaskDump = inspect.TaskDump
	// AsyncTask is one asyncio task.
	AsyncTask = inspect.AsyncTask
	// TaskAwaits is what a task awaits.
	TaskAwaits = inspect.TaskAwaits
)

// Tasks reads every asyncio task of the process from memory (3.7 to
// 3.15), running nothing in it: the threads are paused only while the
// registries and the tasks are read, like Stacks. A process that has
// not imported asyncio has no task.
func (p *Process) Tasks(ctx context.Context, opt TaskOptions) (_ *TaskDump, err error) {
	defer guard(&err, "tasks", p.pid)
	if p.proc.Zombie {
		return nil, errs.Newf(ErrNotPython, "", "process %d is a zombie", p.pid)
	}
	if err := inspect.TasksSupported(p.py.Version, fmt.Sprintf("process %d", p.pid)); err != nil {
		return nil, err
	}
	lv := p.live()
	dbg, err := inspect.LiveAsyncioDebug(lv)
	if err != nil {
		return nil, err
	}
	m, err := p.openCurrent()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return inspect.Tasks(ctx, lv, m, dbg, opt)
}
