package leak

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pyglass/pyglass"
)

//go:embed scripts/tracetop.py
var traceTopPy string

// TraceGrouping is what trace top groups tracemalloc's blocks by.
type TraceGrouping string

// The groupings of TraceTopOptions.
const (
	ByLine      TraceGrouping = "line"
	ByFile      TraceGrouping = "file"
	ByTraceback TraceGrouping = "traceback"
)

// TraceTopOptions select how trace top groups the traced blocks.
type TraceTopOptions struct {
	// By is the grouping ("" is ByLine).
	By TraceGrouping
	// Frames is the traceback depth tracemalloc records when trace top
	// has to start it (0: 1; ByTraceback wants more).
	Frames int
	// Exact reads every traced block with one _tracemalloc._get_traces()
	// call: exact, but the target's threads wait for the whole call (2-5
	// us per traced block). Without it the objects reachable from the
	// program's roots are walked in small steps and asked for their
	// tracebacks: an estimate (see scripts/tracetop.py).
	Exact bool
}

// TraceFrame is one frame of an allocation's traceback.
type TraceFrame struct {
	File string `json:"file"`
	// Line is 0 when grouping by file.
	Line int `json:"line"`
}

// TraceGroup is one row of trace top: the blocks allocated at one line,
// in one file or with one traceback, still alive.
type TraceGroup struct {
	// Frames is the line (one frame), the file (one frame, line 0) or the
	// traceback, most recent call first.
	Frames []TraceFrame `json:"frames"`
	Size   int64        `json:"size"`
	Count  int64        `json:"count"`
}

// TraceTopReport is tracemalloc's live allocations, grouped.
type TraceTopReport struct {
	Python string        `json:"python"`
	By     TraceGrouping `json:"by"`
	// Method is "walk" (objects reachable from the roots, sizes by
	// sys.getsizeof: an estimate) or "exact" (tracemalloc's table).
	Method string `json:"method"`
	// Complete is false when the walk stopped at its bound of visits.
	Complete bool `json:"complete"`
	// Notes say what the walk could not see on this interpreter.
	Notes []string `json:"notes,omitempty"`
	// Started is true when tracemalloc was off and this report started
	// it: only what was allocated since is traced.
	Started bool `json:"started"`
	// Frames is tracemalloc's traceback depth.
	Frames int `json:"frames"`
	// Traces is the number of traced blocks (exact) or traced objects
	// (walk) read.
	Traces int64 `json:"traces"`
	// Untraced and UntracedSize are the objects the walk found that
	// tracemalloc has no traceback for (made before it started).
	Untraced      int64 `json:"untraced"`
	UntracedSize  int64 `json:"untraced_size"`
	TracedCurrent int64 `json:"traced_current"`
	TracedPeak    int64 `json:"traced_peak"`
	// OwnSize is what pyglass's own code had allocated (left out).
	OwnSize int64 `json:"own_size"`
	// Memory is tracemalloc's own memory use.
	Memory int64 `json:"memory"`
	// Groups are sorted by size, largest first; Truncated says that only
	// the largest were kept, GroupCount how many there were.
	Groups     []TraceGroup `json:"groups"`
	GroupCount int64        `json:"group_count"`
	Truncated  bool         `json:"truncated"`
	// LongestHoldMS is the one C call that copies tracemalloc's table
	// (the target's threads wait for it); ElapsedMS is the whole report.
	LongestHoldMS float64 `json:"longest_hold_ms"`
	ElapsedMS     float64 `json:"elapsed_ms"`
	// At is when the table was read, by the target's clock (Unix
	// seconds).
	At float64 `json:"at"`
}

// TraceTopScript returns the Python source of trace top. An unknown
// grouping or a Frames value outside 0..MaxTraceFrames gives a script
// that reports a usage error.
func TraceTopScript(opts TraceTopOptions) []byte {
	by := opts.By
	if by == "" {
		by = ByLine
	}
	switch by {
	case ByLine, ByFile, ByTraceback:
	default:
		by = "invalid"
	}
	frames, ok := traceFrames(opts.Frames)
	if !ok {
		by = "invalid"
	}
	return build(fmt.Sprintf("{'by': '%s', 'frames': %d, 'exact': %s}", by, frames, pyBool(opts.Exact)), objectsPy+"\n"+traceTopPy)
}

// ParseTraceTop decodes the output of TraceTopScript; errors as
// ParseGarbage (errors.Is(err, ErrUnsupported) on Python 2.7).
func ParseTraceTop(out []byte) (*TraceTopReport, error) {
	r := new(TraceTopReport)
	if err := parse(out, "trace top", r); err != nil {
		return nil, err
	}
	return r, nil
}

// TraceTop reports the target's live traced allocations grouped by line,
// file or traceback, starting tracemalloc if it is off.
func TraceTop(ctx context.Context, p *pyglass.Process, opts TraceTopOptions, run RunOptions) (*TraceTopReport, error) {
	return report(ctx, p, TraceTopScript(opts), run, ParseTraceTop)
}

// TraceGrowth is one group of a trace top diff.
type TraceGrowth struct {
	Frames     []TraceFrame `json:"frames"`
	Size       int64        `json:"size"`
	SizeDelta  int64        `json:"size_delta"`
	Count      int64        `json:"count"`
	CountDelta int64        `json:"count_delta"`
}

// TraceGrowthReport compares two trace top reports (tracemalloc's
// Snapshot.compare_to): the groups whose size or count changed, most
// growth first.
type TraceGrowthReport struct {
	Python string        `json:"python"`
	By     TraceGrouping `json:"by"`
	// Started is true when the first report started tracemalloc.
	Started bool `json:"started"`
	// Method is the second report's ("walk" or "exact").
	Method string `json:"method"`
	Frames int    `json:"frames"`
	// Interval is the time between the two reads of tracemalloc's table,
	// by the target's clock, in seconds.
	Interval float64 `json:"interval_s,omitempty"`
	// SizeDelta and CountDelta are the changes over every group.
	SizeDelta  int64         `json:"size_delta"`
	CountDelta int64         `json:"count_delta"`
	Groups     []TraceGrowth `json:"groups"`
	// Truncated is true when either report kept only its largest groups:
	// a group missing from one of them counts as zero there.
	Truncated     bool    `json:"truncated"`
	LongestHoldMS float64 `json:"longest_hold_ms"`
}

func frameKey(fs []TraceFrame) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.File)
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(f.Line))
		b.WriteByte(1)
	}
	return b.String()
}

// DiffTraces compares two trace top reports of the same process taken
// with the same grouping.
func DiffTraces(before, after *TraceTopReport) TraceGrowthReport {
	type pair struct{ b, a TraceGroup }
	m := make(map[string]*pair, len(after.Groups))
	add := func(groups []TraceGroup, side func(*pair) *TraceGroup) {
		for _, g := range groups {
			k := frameKey(g.Frames)
			p := m[k]
			if p == nil {
				p = &pair{}
				m[k] = p
			}
			sg := side(p)
			sg.Frames = g.Frames
			sg.Size += g.Size
			sg.Count += g.Count
		}
	}
	add(before.Groups, func(p *pair) *TraceGroup { return &p.b })
	add(after.Groups, func(p *pair) *TraceGroup { return &p.a })
	r := TraceGrowthReport{Python: after.Python, By: after.By, Method: after.Method, Started: before.Started, Frames: after.Frames,
		Groups: []TraceGrowth{}, Truncated: before.Truncated || after.Truncated,
		LongestHoldMS: max(before.LongestHoldMS, after.LongestHoldMS)}
	for _, p := range m {
		fs := p.a.Frames
		if fs == nil {
			fs = p.b.Frames
		}
		g := TraceGrowth{Frames: fs, Size: p.a.Size, Count: p.a.Count,
			SizeDelta: p.a.Size - p.b.Size, CountDelta: p.a.Count - p.b.Count}
		r.SizeDelta += g.SizeDelta
		r.CountDelta += g.CountDelta
		if g.SizeDelta != 0 || g.CountDelta != 0 {
			r.Groups = append(r.Groups, g)
		}
	}
	sort.Slice(r.Groups, func(i, j int) bool {
		a, b := r.Groups[i], r.Groups[j]
		if a.SizeDelta != b.SizeDelta {
			return a.SizeDelta > b.SizeDelta
		}
		if a.CountDelta != b.CountDelta {
			return a.CountDelta > b.CountDelta
		}
		return frameKey(a.Frames) < frameKey(b.Frames)
	})
	return r
}

// TraceTopGrowth takes two trace top reports of the target d apart
// (starting tracemalloc with the first when it is off) and returns their
// DiffTraces. progress, when not nil, receives the countdown.
func TraceTopGrowth(ctx context.Context, p *pyglass.Process, d time.Duration, opts TraceTopOptions, run RunOptions, progress io.Writer) (TraceGrowthReport, error) {
	return TraceDiffOver(ctx, d, func(ctx context.Context) (*TraceTopReport, error) {
		return TraceTop(ctx, p, opts, run)
	}, progress)
}

// TraceDiffOver takes a report with top, waits d (a countdown on
// progress, when not nil), takes another and returns their DiffTraces.
// It fails when tracemalloc was stopped between the two.
func TraceDiffOver(ctx context.Context, d time.Duration, top func(context.Context) (*TraceTopReport, error), progress io.Writer) (_ TraceGrowthReport, err error) {
	defer recoverReport(&err, "trace top growth")
	before, err := top(ctx)
	if err != nil {
		return TraceGrowthReport{}, fmt.Errorf("taking the first trace top: %w", err)
	}
	first := fmt.Sprintf("%d traced blocks", before.Traces)
	if before.Started {
		first = fmt.Sprintf("tracemalloc started (%d frames)", before.Frames)
	}
	if err := countdown(ctx, d, progress, first, "second trace top"); err != nil {
		return TraceGrowthReport{}, err
	}
	after, err := top(ctx)
	if err != nil {
		return TraceGrowthReport{}, fmt.Errorf("taking the second trace top: %w", err)
	}
	if after.Started {
		return TraceGrowthReport{}, fmt.Errorf("tracemalloc was stopped during the interval (something in the process called tracemalloc.stop()); it is tracing again now")
	}
	g := DiffTraces(before, after)
	g.Interval = after.At - before.At
	return g, nil
}

// frameText is "file:line" ("file" when grouping by file).
func frameText(f TraceFrame) string {
	if f.Line == 0 {
		return f.File
	}
	return fmt.Sprintf("%s:%d", f.File, f.Line)
}

func groupHead(by TraceGrouping) string {
	switch by {
	case ByFile:
		return "FILE"
	case ByTraceback:
		return "TRACEBACK (most recent call first)"
	}
	return "LINE"
}

// escapeText shows the control characters and invalid UTF-8 of text
// read from the target escaped, so it can neither break a line nor drive
// the terminal.
func escapeText(s string) string {
	for _, c := range s {
		if c == utf8.RuneError || !unicode.IsGraphic(c) {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// writeGroupRows prints n groups: a table whose last column is the line or
// the file, or, for tracebacks, one block per group (its numbers, then its
// frames, most recent first).
func writeGroupRows(b *strings.Builder, by TraceGrouping, head string, n int, row func(i int) (cols []string, frames []TraceFrame)) error {
	if by == ByTraceback {
		for i := 0; i < n; i++ {
			cols, fs := row(i)
			fmt.Fprintf(b, "#%d  %s\n", i+1, strings.Join(cols, "  "))
			for _, f := range fs {
				fmt.Fprintf(b, "      %s\n", escapeText(frameText(f)))
			}
		}
		return nil
	}
	tw := table(b)
	fmt.Fprintln(tw, head+"\t  "+groupHead(by)+"\t")
	for i := 0; i < n; i++ {
		cols, fs := row(i)
		top := "?"
		if len(fs) > 0 {
			top = frameText(fs[0])
		}
		fmt.Fprintf(tw, "%s\t  %s\t\n", strings.Join(cols, "\t"), escapeText(top))
	}
	return tw.Flush()
}

// renderGroups writes head (the report's first lines), then the first
// limit (> 0; else all) of n groups as writeGroupRows does, or empty when
// there are none, and "(shown of total what)" when some were left out.
func renderGroups(w io.Writer, head string, by TraceGrouping, cols string, n, limit int, total int64, empty, what string, row func(i int) ([]string, []TraceFrame)) error {
	var b strings.Builder
	b.WriteString(head)
	if limit > 0 && n > limit {
		n = limit
	}
	if n == 0 {
		b.WriteString(empty + "\n")
	} else {
		b.WriteString("\n")
		if err := writeGroupRows(&b, by, cols, n, row); err != nil {
			return fmt.Errorf("rendering %s: %w", what, err)
		}
		if int64(n) < total {
			fmt.Fprintf(&b, "(%d of %d %s)\n", n, total, what)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// RenderTraceTop prints trace top for people; limit > 0 keeps that many
// groups.
func RenderTraceTop(w io.Writer, r *TraceTopReport, limit int) error {
	var b strings.Builder
	if r.Started {
		fmt.Fprintf(&b, "tracemalloc was not tracing: started now (%d frames); only what is allocated from now on is traced\n", r.Frames)
	}
	fmt.Fprintf(&b, "%s traced (peak %s), %d frames per traceback, by %s (Python %s; %.0f ms, longest GIL hold %.1f ms)\n",
		HumanSize(r.TracedCurrent), HumanSize(r.TracedPeak), r.Frames, r.By, r.Python, r.ElapsedMS, r.LongestHoldMS)
	if r.Method == "exact" {
		fmt.Fprintf(&b, "every traced block: %d\n", r.Traces)
	} else if !r.Started {
		fmt.Fprintf(&b, "estimate from the %d traced objects reachable from the program's roots (sizes by sys.getsizeof); --exact reads every block\n", r.Traces)
		if !r.Complete {
			b.WriteString("the walk stopped at its bound of visits: sizes are lower bounds\n")
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return renderGroups(w, b.String(), r.By, "SIZE\tCOUNT\tAVERAGE", len(r.Groups), limit, r.GroupCount,
		"no traced allocation is alive", "groups", func(i int) ([]string, []TraceFrame) {
			g := r.Groups[i]
			return []string{HumanSize(g.Size), fmt.Sprint(g.Count), HumanSize(g.Size / max(g.Count, 1))}, g.Frames
		})
}

// RenderTraceGrowth prints a trace top diff for people; limit > 0 keeps
// that many groups.
func RenderTraceGrowth(w io.Writer, g TraceGrowthReport, limit int) error {
	var b strings.Builder
	if g.Started {
		fmt.Fprintf(&b, "tracemalloc was not tracing: started at the first report (%d frames)\n", g.Frames)
	}
	if g.Interval > 0 {
		fmt.Fprintf(&b, "growth over %s: ", time.Duration(g.Interval*float64(time.Second)).Round(time.Millisecond))
	}
	unit := "blocks"
	if g.Method == "walk" {
		unit = "objects (an estimate from the objects reachable from the roots)"
	}
	fmt.Fprintf(&b, "%s in %+d %s, by %s (Python %s; longest GIL hold %.1f ms)\n", signedSize(g.SizeDelta), g.CountDelta, unit, g.By, g.Python, g.LongestHoldMS)
	return renderGroups(w, b.String(), g.By, "SIZE\tGROWTH\tCOUNT\tGROWTH", len(g.Groups), limit, int64(len(g.Groups)),
		"no group changed", "groups that changed", func(i int) ([]string, []TraceFrame) {
			r := g.Groups[i]
			return []string{HumanSize(r.Size), signedSize(r.SizeDelta), fmt.Sprint(r.Count), fmt.Sprintf("%+d", r.CountDelta)}, r.Frames
		})
}
