package leak

import (
	_ "embed"
	"fmt"
	"strings"
)

var (
	//go:embed scripts/common.py
	commonPy string
	//go:embed scripts/footer.py
	footerPy string
	//go:embed scripts/garbage.py
	garbagePy string
	//go:embed scripts/objects.py
	objectsPy string
	//go:embed scripts/gc.py
	gcPy string
	//go:embed scripts/trace.py
	tracePy string
)

// DefaultExamples is the number of example reprs per type that
// GarbageOptions asks for when Limit is 0.
const DefaultExamples = 3

// MaxTraceFrames is the largest --frames value TraceScript accepts.
const MaxTraceFrames = 1000

// GarbageOptions selects what the garbage report does before reporting.
type GarbageOptions struct {
	// Collect runs gc.collect() first.
	Collect bool
	// SaveAll sets gc.DEBUG_SAVEALL for one collection, reports the
	// objects it saved, then takes exactly those out of gc.garbage again,
	// restores the flags and collects so that they are freed.
	SaveAll bool
	// Limit is the number of example reprs per type (0: DefaultExamples,
	// negative: none).
	Limit int
}

// ObjectsOptions selects the rows of the objects report.
type ObjectsOptions struct {
	// Top keeps the N most numerous types; 0 keeps every type (what Diff
	// needs to see every type that grew).
	Top int
	// All counts every object the collector tracks with gc.get_objects:
	// exact, but one GIL hold proportional to the heap. Without it the
	// census walks from the program's roots in small steps.
	All bool
}

// TraceAction is what the trace report does to tracemalloc.
type TraceAction string

// The trace actions.
const (
	TraceStart  TraceAction = "start"
	TraceStop   TraceAction = "stop"
	TraceStatus TraceAction = "status"
)

// TraceOptions selects the trace action.
type TraceOptions struct {
	Action TraceAction
	// Frames is the traceback depth tracemalloc records on start (0: 1).
	Frames int
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func build(opts, body string) []byte {
	var b strings.Builder
	b.Grow(len(opts) + len(commonPy) + len(body) + len(footerPy) + 8)
	b.WriteString("_pg_opts = ")
	b.WriteString(opts)
	b.WriteString("\n")
	b.WriteString(commonPy)
	b.WriteString("\n")
	b.WriteString(body)
	b.WriteString("\n")
	b.WriteString(footerPy)
	return []byte(b.String())
}

// GarbageScript returns the Python source of the garbage report.
func GarbageScript(opts GarbageOptions) []byte {
	limit := opts.Limit
	if limit == 0 {
		limit = DefaultExamples
	}
	if limit < 0 {
		limit = 0
	}
	return build(fmt.Sprintf("{'collect': %s, 'saveall': %s, 'limit': %d}",
		pyBool(opts.Collect), pyBool(opts.SaveAll), limit), garbagePy)
}

// ObjectsScript returns the Python source of the objects census.
func ObjectsScript(opts ObjectsOptions) []byte {
	top := opts.Top
	if top < 0 {
		top = 0
	}
	return build(fmt.Sprintf("{'top': %d, 'all': %s}", top, pyBool(opts.All)), objectsPy)
}

// GCOptions select what the gc report does first.
type GCOptions struct {
	// Collect runs a full collection before reading the state.
	Collect bool
}

// GCScript returns the Python source of the gc report.
func GCScript(opts GCOptions) []byte {
	return build(fmt.Sprintf("{'collect': %s}", pyBool(opts.Collect)), gcPy)
}

// TraceScript returns the Python source of the trace report. An unknown
// action or a Frames value outside 0..MaxTraceFrames gives a script that
// reports a usage error.
func TraceScript(opts TraceOptions) []byte {
	action := opts.Action
	switch action {
	case TraceStart, TraceStop, TraceStatus:
	default:
		action = "invalid"
	}
	frames, ok := traceFrames(opts.Frames)
	if !ok {
		action = "invalid"
	}
	return build(fmt.Sprintf("{'action': '%s', 'frames': %d}", action, frames), tracePy)
}

// traceFrames is the traceback depth a script asks for: 1 for 0, and
// false (with 1) outside 0..MaxTraceFrames.
func traceFrames(frames int) (int, bool) {
	if frames == 0 {
		return 1, true
	}
	if frames < 0 || frames > MaxTraceFrames {
		return 1, false
	}
	return frames, true
}
