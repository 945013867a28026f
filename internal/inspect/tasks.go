package inspect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target/live"
)

// TaskOptions tunes Process.Tasks.
type TaskOptions struct {
	// All includes the tasks that are done or cancelled (still
	// referenced); by default only pending tasks are listed.
	All bool
	// NonBlocking reads without pausing the threads.
	NonBlocking bool
}

// TaskDump is every asyncio task of a process.
type TaskDump struct {
	PID    int         `json:"pid"`
	Python PythonRef   `json:"python"`
	Tasks  []AsyncTask `json:"tasks"`
	// Cycles lists the await cycles (task A awaits B awaits A), each by
	// its members' ids in await order.
	Cycles [][]string `json:"cycles"`
	// Paused is how long the target's threads were paused.
	Paused time.Duration `json:"-"`
}

// AsyncTask is one asyncio task. IDs are the task objects' addresses
// (id(task) in the target) in hexadecimal, "0x7f…".
type AsyncTask struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	// Interpreter is the index of the task's interpreter (0 for the
	// main one).
	Interpreter int `json:"interpreter"`
	// Thread is the thread id of the thread running the task's loop (as
	// in StackDump), 0 when none does.
	Thread int `json:"thread"`
	// Loop is the id of the task's event loop.
	Loop string `json:"loop"`
	// Running is true for the task its loop is running right now.
	Running bool `json:"running"`
	// Stack is the chain of coroutines, the task's own first, each at
	// the line where it awaits the next.
	Stack []Frame `json:"stack"`
	// Awaits is what the task waits for.
	Awaits TaskAwaits `json:"awaits"`
	// AwaitedBy lists the ids of the tasks waiting for this one.
	AwaitedBy []string `json:"awaited_by"`
	// Exception is the type of the exception a done task ended with.
	Exception string `json:"exception,omitempty"`
	// Error says what of the task could not be read.
	Error string `json:"error,omitempty"`
}

// TaskAwaits is what a task waits for: Kind is "task", "gather",
// "taskgroup", "sleep", "lock", "event", "condition", "semaphore",
// "queue", "socket", "wait_for", "future", or "" for nothing.
type TaskAwaits struct {
	Kind string `json:"kind"`
	// Object is the id of the future waited on, Type its type.
	Object string `json:"object,omitempty"`
	Type   string `json:"type,omitempty"`
	// Tasks are the ids of the tasks waited for.
	Tasks []string `json:"tasks,omitempty"`
	// Deadline is, for "sleep", when the sleep ends, in seconds of the
	// loop's clock (loop.time(): time.monotonic() for asyncio's loops),
	// and DueIn how many seconds after the snapshot that is (negative:
	// overdue, the loop is late).
	Deadline float64  `json:"deadline,omitempty"`
	DueIn    *float64 `json:"due_in,omitempty"`
}

func hexID(a uint64) string { return "0x" + strconv.FormatUint(a, 16) }

func hexIDs(a []uint64) []string {
	out := make([]string, len(a))
	for i, v := range a {
		out[i] = hexID(v)
	}
	return out
}

// Tasks is Process.Tasks on the live process p, its memory open as m
// (its version checked by TasksSupported; 3.14+: dbg from LiveAsyncioDebug,
// read before).
func Tasks(ctx context.Context, p *Live, m *Memory, dbg *cpython.AsyncioDebug, opt TaskOptions) (_ *TaskDump, err error) {
	var paused time.Duration
	dump, err := tasksOn(ctx, p.Snapshot(m.r, false), m, p.Py, dbg, opt, p.Gone, func(read func(memory.Reader) error) (func() float64, error) {
		// The target's monotonic clock (its loops' time) when the
		// snapshot is taken: read once, moved on by ours.
		mono, monoErr := procfs.New(p.PID).Monotonic()
		monoAt := time.Now()
		snapAt := monoAt
		var now func() float64
		if monoErr == nil {
			now = func() float64 { return (mono + snapAt.Sub(monoAt)).Seconds() }
		}
		if opt.NonBlocking {
			return now, read(newPageCache(m.r))
		}
		freeze := func() (func(), error) {
			f, err := p.Freeze()
			if err != nil {
				return nil, err
			}
			snapAt = time.Now()
			if TestHookPause != nil {
				TestHookPause(true)
			}
			return func() {
				if TestHookPause != nil {
					TestHookPause(false)
				}
				f.Thaw()
			}, nil
		}
		var err error
		paused, err = pausedRead(m.r, freeze, read)
		return now, err
	})
	if err != nil {
		return nil, err
	}
	dump.Paused = paused
	return dump, nil
}

// readAsyncTasks reads the tasks of every interpreter of a snapshot rd,
// with the interpreters' addresses (the main one first) and, for each
// task, the index of its interpreter. gone turns an error into the
// process's exit when it is gone.
func readAsyncTasks(ctx context.Context, rd memory.Reader, m *Memory, dbg *cpython.AsyncioDebug, pid int, gone func(error) error) (all []cpython.AsyncTask, which []int, interps []uint64, err error) {
	interps, err = cpython.FindInterpreters(rd, m.img, m.l)
	if err != nil {
		return nil, nil, nil, gone(&errs.Error{Kind: errs.NotPython, Msg: fmt.Sprintf("process %d: cannot find the Python interpreter in memory", pid), Err: err})
	}
	slices.Reverse(interps)
	for i, interp := range interps {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		opt := cpython.AsyncOptions{Debug: dbg}
		// Only the thread states' addresses in the snapshot; their
		// thread ids are read after it (a thread state does not move).
		th, _ := cpython.Threads(rd, m.l, interp, cpython.ThreadOptions{SkipNames: true})
		for _, t := range th {
			opt.Threads = append(opt.Threads, t.Addr)
		}
		ts, err := cpython.AsyncTasks(rd, m.l, interp, opt)
		if errors.Is(err, cpython.ErrNoAsyncio) {
			continue
		}
		if err != nil {
			return nil, nil, nil, gone(&errs.Error{Kind: errs.Internal, Msg: fmt.Sprintf("process %d: reading the asyncio tasks of interpreter %d", pid, i), Err: err})
		}
		if all == nil {
			all = ts // one interpreter: no copy
		} else {
			all = append(all, ts...)
		}
		for range ts {
			which = append(which, i)
		}
	}
	return all, which, interps, nil
}

// fillTaskDump adds the tasks (only the pending ones unless withDone)
// and the await cycles to dump. tidOf maps a thread state to its thread
// id; now, when known, is the loops' clock at the snapshot (for the
// time left of a sleep).
func fillTaskDump(dump *TaskDump, all []cpython.AsyncTask, which []int, tidOf map[uint64]int, withDone bool, now func() float64) {
	for _, c := range cpython.AsyncCycles(all) {
		dump.Cycles = append(dump.Cycles, hexIDs(c))
	}
	n, frames := 0, 0
	for i := range all {
		if withDone || all[i].State == cpython.TaskPending {
			n, frames = n+1, frames+len(all[i].Stack)
		}
	}
	dump.Tasks = slices.Grow(dump.Tasks, n)
	slab := make([]Frame, frames) // every task's stack, in one allocation
	dues := make([]float64, 0, n)
	var loop uint64
	var loopID string
	for i := range all {
		t := &all[i]
		if !withDone && t.State != cpython.TaskPending {
			continue
		}
		if t.Loop != loop || loopID == "" {
			loop, loopID = t.Loop, hexID(t.Loop) // tasks of a loop come together
		}
		stack := slab[:0:len(t.Stack)]
		slab = slab[len(t.Stack):]
		at := AsyncTask{ID: hexID(t.Addr), Name: t.Name, State: t.State, Interpreter: which[i], Loop: loopID, Thread: tidOf[t.Thread],
			Running: t.Running, Stack: stack, AwaitedBy: hexIDs(t.AwaitedBy), Exception: t.Exception, Error: t.Err,
			Awaits: TaskAwaits{Kind: t.Awaits.Kind, Type: t.Awaits.Type, Tasks: hexIDs(t.Awaits.Tasks)}}
		if t.Awaits.Object != 0 {
			at.Awaits.Object = hexID(t.Awaits.Object)
		}
		if t.Awaits.HasDeadline {
			at.Awaits.Deadline = t.Awaits.Deadline
			if now != nil {
				dues = append(dues, math.Round((t.Awaits.Deadline-now())*1e3)/1e3)
				at.Awaits.DueIn = &dues[len(dues)-1]
			}
		}
		if len(at.Awaits.Tasks) == 0 {
			at.Awaits.Tasks = nil
		}
		for _, f := range t.Stack {
			at.Stack = append(at.Stack, Frame{Function: f.Function, File: f.File, Line: f.Line})
		}
		dump.Tasks = append(dump.Tasks, at)
	}
}

// TestHookPause, when set (tests), is told when Tasks has paused the
// target's threads (true) and is about to let them go (false).
var TestHookPause func(paused bool)

// LiveAsyncioDebug reads the .AsyncioDebug section (3.14+; nil before)
// of the live process p from its files: data the module was built with,
// read before any pause. Only the mappings are looked at: no thread is
// listed.
func LiveAsyncioDebug(p *Live) (*cpython.AsyncioDebug, error) {
	return AsyncioDebugOn(live.SnapshotOf(p.PID, nil, nil), p.Py, fmt.Sprintf("process %d", p.PID), func(err error) error {
		return p.Gone(&errs.Error{Kind: errs.Permission, Msg: fmt.Sprintf("process %d: reading its memory maps", p.PID), Err: err})
	})
}
