package cpython

import (
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// asyncioLayout holds the offsets of the _asyncio module's C future and
// task objects (Modules/_asynciomodule.c: FutureObj_HEAD, TaskObj), of
// coroutine objects (gi_frame, gi_iframe, gi_frame_state) and of the
// value stack of a ≤3.10 frame object, which the generated layout does
// not carry. They are data for 64-bit Linux, one entry per minor
// version, checked against real processes of every interpreter by
// TestAsyncioLayoutLive (which prints the offsets it finds when they
// differ). A member a version lacks is -1.
type asyncioLayout struct {
	// FutLoop .. FutState: FutureObj_HEAD. fut_state is a C int
	// (PENDING 0, CANCELLED 1, FINISHED 2).
	FutLoop, FutException, FutResult, FutState int
	// TaskFutWaiter, TaskCoro, TaskName follow FutureObj_HEAD in TaskObj;
	// task_name is 3.8+.
	TaskFutWaiter, TaskCoro, TaskName int
	// GenFrame is offsetof(PyGenObject, gi_frame), ≤3.10.
	GenFrame int
	// GenIframe is offsetof(PyGenObject, gi_iframe) and GenFrameState
	// offsetof(PyGenObject, gi_frame_state) (an int8), 3.11+.
	GenIframe, GenFrameState int
	// FrameStacktop is offsetof(PyFrameObject, f_stacktop), 3.7–3.9;
	// FrameValuestack and FrameStackdepth (an int) are 3.10's.
	FrameStacktop, FrameValuestack, FrameStackdepth int
	// StateYieldFrom is the gi_frame_state of a coroutine suspended in
	// an await (3.11+), StateDone the first state of a coroutine that
	// has no frame any more (completed, cleared).
	StateYieldFrom, StateDone int
	// YieldFromSlot is where, counted from the top of a suspended
	// coroutine's value stack (1: the top), the object it awaits is:
	// 2 on 3.15, whose frames keep one more slot above it.
	YieldFromSlot int
	// TstateDict is offsetof(PyThreadState, dict), where 3.7–3.12 keep
	// the running loop under "__asyncio_running_event_loop__" (3.7–3.11
	// in a _RunningLoopHolder: PyObject_HEAD, rl_loop);
	// TstateRunningLoop is offsetof(PyThreadState, asyncio_running_loop),
	// 3.13 (3.14+ publishes it in .AsyncioDebug).
	TstateDict, TstateRunningLoop int
}

// asyncioLayouts by minor version of 3.x.
var asyncioLayouts = map[int]asyncioLayout{
	7:  {16, 48, 56, 72, 104, 112, -1, 16, -1, -1, 72, -1, -1, 0, 0, 1, 152, -1},
	8:  {16, 48, 56, 72, 104, 112, 120, 16, -1, -1, 72, -1, -1, 0, 0, 1, 152, -1},
	9:  {16, 48, 56, 80, 144, 152, 160, 16, -1, -1, 72, -1, -1, 0, 0, 1, 152, -1},
	10: {16, 48, 64, 88, 152, 160, 168, 16, -1, -1, -1, 64, 80, 0, 0, 1, 152, -1},
	11: {16, 48, 64, 88, 128, 136, 144, -1, 80, 75, -1, -1, -1, -1, 1, 1, 128, -1},
	12: {16, 48, 64, 88, 128, 136, 144, -1, 72, 67, -1, -1, -1, -1, 1, 1, 112, -1},
	13: {16, 48, 64, 96, 112, 120, 128, -1, 72, 67, -1, -1, -1, -1, 1, 1, -1, 304},
	// 3.14+: the task members the target publishes in its .AsyncioDebug
	// section replace these (see AsyncioDebug.apply); the future's and
	// the coroutine's are the table's.
	14: {16, 48, 64, 104, 120, 128, 136, -1, 72, 67, -1, -1, -1, -1, 1, 1, -1, -1},
	15: {16, 48, 64, 104, 120, 128, 136, -1, 72, 67, -1, -1, -1, 2, 5, 2, -1, -1},
}

// AsyncioDebug is the _asyncio module's _Py_AsyncioModuleDebugOffsets
// (3.14+), the contents of its ELF section .AsyncioDebug: thirteen
// uint64 members, sizes and offsets of the task object, the interpreter
// state and the thread state (_PyThreadStateImpl).
type AsyncioDebug struct {
	TaskSize, TaskName, TaskAwaitedBy, TaskIsTask, TaskAwaitedByIsSet, TaskCoro, TaskNode uint64
	InterpSize, InterpTasksHead                                                           uint64
	ThreadSize, ThreadRunningLoop, ThreadRunningTask, ThreadTasksHead                     uint64
}

// maxDebugStruct bounds the structure sizes an .AsyncioDebug section may
// state (the interpreter state is about 220 KiB on 3.14).
const maxDebugStruct = 1 << 22

// ParseAsyncioDebug decodes an .AsyncioDebug section. It is hostile
// input: every offset must leave room for the member inside its
// structure, and the task members must fit the task object pyglass
// reads (a future head of 112 bytes at least).
func ParseAsyncioDebug(b []byte) (*AsyncioDebug, error) {
	if len(b) < 13*8 {
		return nil, fmt.Errorf(".AsyncioDebug section of %d bytes, want 104: %w", len(b), layout.ErrBadLayout)
	}
	v := make([]uint64, 13)
	for i := range v {
		v[i] = memory.Order.Uint64(b[8*i:])
	}
	d := &AsyncioDebug{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]}
	in := func(size uint64, offs ...uint64) bool {
		if size == 0 || size > maxDebugStruct {
			return false
		}
		for _, o := range offs {
			if o >= size || size-o < 16 || o%8 != 0 && o != d.TaskIsTask && o != d.TaskAwaitedByIsSet {
				return false
			}
		}
		return true
	}
	if !in(d.TaskSize, d.TaskName, d.TaskAwaitedBy, d.TaskIsTask, d.TaskAwaitedByIsSet, d.TaskCoro, d.TaskNode) ||
		d.TaskAwaitedBy < 96 || d.TaskCoro < 24 || d.TaskSize > 4096 ||
		!in(d.InterpSize, d.InterpTasksHead) ||
		!in(d.ThreadSize, d.ThreadRunningLoop, d.ThreadRunningTask, d.ThreadTasksHead) {
		return nil, fmt.Errorf(".AsyncioDebug section %v does not describe plausible structures: %w", v, layout.ErrBadLayout)
	}
	return d, nil
}

// apply returns al with the task members d publishes: fut_state follows
// fut_awaited_by, task_fut_waiter precedes task_coro
// (Modules/_asynciomodule.c, 3.14+).
func (d *AsyncioDebug) apply(al asyncioLayout) asyncioLayout {
	al.FutState = int(d.TaskAwaitedBy) + 8
	al.TaskCoro = int(d.TaskCoro)
	al.TaskFutWaiter = int(d.TaskCoro) - 8
	al.TaskName = int(d.TaskName)
	return al
}
