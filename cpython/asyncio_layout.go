package cpython

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
}

// asyncioLayouts by minor version of 3.x.
var asyncioLayouts = map[int]asyncioLayout{
	7:  {16, 48, 56, 72, 104, 112, -1, 16, -1, -1, 72, -1, -1},
	8:  {16, 48, 56, 72, 104, 112, 120, 16, -1, -1, 72, -1, -1},
	9:  {16, 48, 56, 80, 144, 152, 160, 16, -1, -1, 72, -1, -1},
	10: {16, 48, 64, 88, 152, 160, 168, 16, -1, -1, -1, 64, 80},
	11: {16, 48, 64, 88, 128, 136, 144, -1, 80, 75, -1, -1, -1},
	12: {16, 48, 64, 88, 128, 136, 144, -1, 72, 67, -1, -1, -1},
	13: {16, 48, 64, 96, 112, 120, 128, -1, 72, 67, -1, -1, -1},
}

// Coroutine frame states (gi_frame_state, Include/internal/pycore_frame.h).
const (
	frameSuspended311         = -1 // 3.11, 3.12: FRAME_SUSPENDED
	frameSuspendedYieldFrom13 = -1 // 3.13+: FRAME_SUSPENDED_YIELD_FROM
	frameCompleted311         = 1  // 3.11+: FRAME_COMPLETED (CLEARED is 4)
)
