package leak

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

var (
	// ErrUnsupported matches a ScriptError saying that the target's Python
	// lacks what the report needs (tracemalloc on 2.7).
	ErrUnsupported = errors.New("not supported by the target's Python")
	// ErrNoReport is returned when a script's output holds no JSON
	// document.
	ErrNoReport = errors.New("no report in the script output")
)

// ScriptError is a failure that a report script met inside the target
// and reported as {"error": "..."}.
type ScriptError struct {
	Msg string `json:"error"`
	// Kind is "unsupported", "usage" or empty.
	Kind string `json:"kind,omitempty"`
	// Python is the target's version when the script could tell it.
	Python string `json:"python,omitempty"`
}

func (e *ScriptError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrUnsupported) true for unsupported features.
func (e *ScriptError) Is(target error) bool {
	return target == ErrUnsupported && e.Kind == "unsupported"
}

// GarbageReport is the garbage report: the objects in gc.garbage.
type GarbageReport struct {
	Python string `json:"python"`
	// Collected is what gc.collect() returned, when one ran.
	Collected *int64 `json:"collected"`
	SaveAll   bool   `json:"saveall"`
	// Saved is the number of objects DEBUG_SAVEALL saved (SaveAll only).
	Saved *int64 `json:"saved"`
	// Total is the number of objects reported.
	Total       int64 `json:"total"`
	ShallowSize int64 `json:"shallow_size"`
	// RetainedSize is what clearing the reported garbage would free: every
	// reported object once plus what only the garbage keeps alive.
	RetainedSize int64 `json:"retained_size"`
	// RetainedExact is false when the graph walk hit its budget and
	// retained sizes are lower bounds.
	RetainedExact bool `json:"retained_exact"`
	// Tracemalloc tells whether tracemalloc was tracing (creation lines).
	Tracemalloc bool `json:"tracemalloc"`
	// GarbageLen is len(gc.garbage) when the report ended.
	GarbageLen int64   `json:"garbage_len"`
	ElapsedMS  float64 `json:"elapsed_ms"`
	// Notes are caveats about this report (known CPython limitations).
	Notes []string      `json:"notes"`
	Types []GarbageType `json:"types"`
}

// GarbageType is one type's row of the garbage report.
type GarbageType struct {
	// Type is "module.QualName" (builtins without module).
	Type        string `json:"type"`
	Count       int64  `json:"count"`
	ShallowSize int64  `json:"shallow_size"`
	// RetainedSize is the shallow size plus what only this type's garbage
	// keeps alive (see scripts/garbage.py for the exact definition).
	RetainedSize int64    `json:"retained_size"`
	Examples     []string `json:"examples"`
	// Cycle is one reference path from an object of this type back to
	// itself, or nil when none was found within the search budget.
	Cycle []CycleStep `json:"cycle"`
	// CreatedAt lists the allocation lines, most frequent first, when
	// tracemalloc was tracing.
	CreatedAt []CreationLine `json:"created_at"`
}

// CycleStep is one object of a reference cycle and the reference that
// leads to the next one.
type CycleStep struct {
	Type string `json:"type"`
	// Name is the qualified name without its module.
	Name string `json:"name"`
	// Container is true for builtin dicts, lists, tuples and sets, which
	// the text rendering folds into the edges.
	Container bool `json:"container"`
	// Edge names the reference: ".attr", "[3]", "['key']", "<key>",
	// "<member>" or "?" when it could not be named.
	Edge string `json:"edge"`
}

// CreationLine is an allocation site from tracemalloc.
type CreationLine struct {
	File  string `json:"file"`
	Line  int    `json:"line"`
	Count int64  `json:"count"`
}

// ObjectsReport is a census of the objects the garbage collector tracks.
type ObjectsReport struct {
	Python string `json:"python"`
	// Method is "walk" (from the program's roots, in small steps) or "gc"
	// (gc.get_objects: every tracked object, one long GIL hold).
	Method string `json:"method"`
	// Complete is false when the walk stopped at its bound of visits.
	Complete  bool  `json:"complete"`
	Total     int64 `json:"total"`
	TotalSize int64 `json:"total_size"`
	// TypeCount is the number of types before the Top cut.
	TypeCount int64       `json:"type_count"`
	Types     []TypeCount `json:"types"`
	ElapsedMS float64     `json:"elapsed_ms"`
	// LongestHoldMS is the longest stretch the census ran without
	// stepping aside for the target's threads, in the walking thread's
	// CPU time (3.7+; the process's before): how long its own work kept
	// the GIL at once, not counting waits to take it back or the machine
	// descheduling it (for "gc", the longest gc.get_objects call, wall
	// time).
	LongestHoldMS float64 `json:"longest_hold_ms"`
	// Notes say what the census could not see on this interpreter.
	Notes []string `json:"notes,omitempty"`
}

// TypeCount is one type's row of a census.
type TypeCount struct {
	Type  string `json:"type"`
	Count int64  `json:"count"`
	Size  int64  `json:"size"`
}

// GCReport is the state of the target's garbage collector.
type GCReport struct {
	Python     string  `json:"python"`
	Enabled    bool    `json:"enabled"`
	Thresholds []int64 `json:"thresholds"`
	Counts     []int64 `json:"counts"`
	// Flags names the DEBUG_* flags set; FlagBits is gc.get_debug().
	Flags      []string `json:"flags"`
	FlagBits   int64    `json:"flag_bits"`
	GarbageLen int64    `json:"garbage_len"`
	// Stats is gc.get_stats() (nil on 2.7).
	Stats []GenStats `json:"stats"`
	// Frozen is gc.get_freeze_count() (nil before 3.7).
	Frozen *int64 `json:"frozen"`
}

// GenStats is gc.get_stats() for one generation.
type GenStats struct {
	Generation    int   `json:"generation"`
	Collections   int64 `json:"collections"`
	Collected     int64 `json:"collected"`
	Uncollectable int64 `json:"uncollectable"`
}

// TraceReport is the state of tracemalloc after a trace action.
type TraceReport struct {
	Python     string `json:"python"`
	Action     string `json:"action"`
	WasTracing bool   `json:"was_tracing"`
	Tracing    bool   `json:"tracing"`
	// Changed is true when the action started or stopped tracing.
	Changed bool `json:"changed"`
	// Frames is the traceback depth (tracemalloc.get_traceback_limit()).
	Frames int `json:"frames"`
	// Memory is tracemalloc's own memory use; for stop, before stopping.
	Memory int64 `json:"memory"`
	// MemoryAfter is tracemalloc's own memory use after a stop.
	MemoryAfter   *int64 `json:"memory_after,omitempty"`
	TracedCurrent int64  `json:"traced_current"`
	TracedPeak    int64  `json:"traced_peak"`
}

// lastDocument returns the last line of out that starts with '{': the
// script prints its document last, after anything the target printed.
func lastDocument(out []byte) ([]byte, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) > 0 && l[0] == '{' {
			return l, nil
		}
	}
	return nil, ErrNoReport
}

func parse(out []byte, what string, v any) (err error) {
	defer recoverReport(&err, what)
	if testHookParse != nil {
		testHookParse()
	}
	doc, err := lastDocument(out)
	if err != nil {
		return fmt.Errorf("parsing %s report: %w", what, err)
	}
	var se ScriptError
	if err := json.Unmarshal(doc, &se); err != nil {
		return fmt.Errorf("parsing %s report: %w", what, err)
	}
	if se.Msg != "" {
		return fmt.Errorf("%s report: %w", what, &se)
	}
	if err := json.Unmarshal(doc, v); err != nil {
		return fmt.Errorf("parsing %s report: %w", what, err)
	}
	return nil
}

// ParseGarbage decodes the output of GarbageScript. It returns a wrapped
// *ScriptError when the script failed in the target, ErrNoReport when the
// output holds no document.
func ParseGarbage(out []byte) (*GarbageReport, error) {
	r := new(GarbageReport)
	if err := parse(out, "garbage", r); err != nil {
		return nil, err
	}
	return r, nil
}

// ParseObjects decodes the output of ObjectsScript; errors as ParseGarbage.
func ParseObjects(out []byte) (*ObjectsReport, error) {
	r := new(ObjectsReport)
	if err := parse(out, "objects", r); err != nil {
		return nil, err
	}
	return r, nil
}

// ParseGC decodes the output of GCScript; errors as ParseGarbage.
func ParseGC(out []byte) (*GCReport, error) {
	r := new(GCReport)
	if err := parse(out, "gc", r); err != nil {
		return nil, err
	}
	return r, nil
}

// ParseTrace decodes the output of TraceScript; errors as ParseGarbage
// (errors.Is(err, ErrUnsupported) on Python 2.7).
func ParseTrace(out []byte) (*TraceReport, error) {
	r := new(TraceReport)
	if err := parse(out, "trace", r); err != nil {
		return nil, err
	}
	return r, nil
}
