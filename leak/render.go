package leak

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// HumanSize formats a byte count with binary units: "512 B", "1.5 KiB".
func HumanSize(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := ""
	switch {
	case n < 1024:
		s = fmt.Sprintf("%d B", n)
	case n < 1<<20:
		s = fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		s = fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		s = fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	if neg {
		return "-" + s
	}
	return s
}

func signedSize(n int64) string {
	if n > 0 {
		return "+" + HumanSize(n)
	}
	return HumanSize(n)
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// CycleText renders a cycle as "Node -> .parent -> Node -> .children[3] ->
// Node": builtin containers on the way are folded into the edge names.
func CycleText(steps []CycleStep) string {
	if len(steps) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(steps[0].Name)
	edge := steps[0].Edge
	for _, s := range steps[1:] {
		if s.Container {
			edge += s.Edge
			continue
		}
		b.WriteString(" -> " + edge + " -> " + s.Name)
		edge = s.Edge
	}
	b.WriteString(" -> " + edge + " -> " + steps[0].Name)
	return b.String()
}

// RenderGarbage prints the garbage report for people.
func RenderGarbage(w io.Writer, r *GarbageReport) error {
	var b strings.Builder
	if r.Collected != nil {
		if r.SaveAll {
			fmt.Fprintf(&b, "collected %d objects with DEBUG_SAVEALL; %d saved\n", *r.Collected, r.Total)
		} else {
			fmt.Fprintf(&b, "gc.collect() found %d unreachable objects\n", *r.Collected)
		}
	}
	what := "gc.garbage"
	if r.SaveAll {
		what = "saved garbage"
	}
	if r.Total == 0 {
		fmt.Fprintf(&b, "%s is empty (Python %s)\n", what, r.Python)
		_, err := io.WriteString(w, b.String())
		return err
	}
	approx := ""
	if !r.RetainedExact {
		approx = " at least"
	}
	fmt.Fprintf(&b, "%s: %d objects, %s shallow,%s %s retained (Python %s)\n\n",
		what, r.Total, HumanSize(r.ShallowSize), approx, HumanSize(r.RetainedSize), r.Python)
	tw := table(&b)
	fmt.Fprintln(tw, "COUNT\tSHALLOW\tRETAINED\t  TYPE\t")
	for _, t := range r.Types {
		fmt.Fprintf(tw, "%d\t%s\t%s\t  %s\t\n", t.Count, HumanSize(t.ShallowSize), HumanSize(t.RetainedSize), t.Type)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("rendering garbage report: %w", err)
	}
	for _, t := range r.Types {
		fmt.Fprintf(&b, "\n%s (%d)\n", t.Type, t.Count)
		if len(t.Cycle) > 0 {
			fmt.Fprintf(&b, "  cycle:    %s\n", CycleText(t.Cycle))
		}
		for _, c := range t.CreatedAt {
			fmt.Fprintf(&b, "  created:  %s:%d (%d)\n", c.File, c.Line, c.Count)
		}
		for _, e := range t.Examples {
			fmt.Fprintf(&b, "  example:  %s\n", e)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	if r.SaveAll {
		fmt.Fprintf(&b, "\nthe saved objects were taken out of gc.garbage again (%d left in it)\n", r.GarbageLen)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// RenderObjects prints a census for people.
func RenderObjects(w io.Writer, r *ObjectsReport) error {
	var b strings.Builder
	scope := "reachable from modules, threads and classes"
	if r.Method == "gc" {
		scope = "every object the collector tracks"
	}
	fmt.Fprintf(&b, "%d objects, %s in %d types, %s (Python %s; census %.0f ms, longest GIL hold %.0f ms)\n",
		r.Total, HumanSize(r.TotalSize), r.TypeCount, scope, r.Python, r.ElapsedMS, r.LongestHoldMS)
	if !r.Complete && r.Method == "walk" {
		b.WriteString("the walk stopped at its bound of visits: counts are lower bounds\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	b.WriteString("\n")
	tw := table(&b)
	fmt.Fprintln(tw, "COUNT\tSIZE\t  TYPE\t")
	for _, t := range r.Types {
		fmt.Fprintf(tw, "%d\t%s\t  %s\t\n", t.Count, HumanSize(t.Size), t.Type)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("rendering objects report: %w", err)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// RenderGC prints the gc report for people.
func RenderGC(w io.Writer, r *GCReport) error {
	var b strings.Builder
	state := "disabled"
	if r.Enabled {
		state = "enabled"
	}
	fmt.Fprintf(&b, "gc %s (Python %s)\n", state, r.Python)
	fmt.Fprintf(&b, "thresholds:  %s\n", joinInts(r.Thresholds))
	fmt.Fprintf(&b, "counts:      %s\n", joinInts(r.Counts))
	flags := "none"
	if len(r.Flags) > 0 {
		flags = strings.Join(r.Flags, " | ")
	}
	fmt.Fprintf(&b, "debug flags: %s (%d)\n", flags, r.FlagBits)
	fmt.Fprintf(&b, "gc.garbage:  %d objects\n", r.GarbageLen)
	if r.Frozen != nil {
		fmt.Fprintf(&b, "frozen:      %d objects\n", *r.Frozen)
	}
	if len(r.Stats) > 0 {
		b.WriteString("\n")
		tw := table(&b)
		fmt.Fprintln(tw, "GENERATION\tCOLLECTIONS\tCOLLECTED\tUNCOLLECTABLE\t")
		for _, s := range r.Stats {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t\n", s.Generation, s.Collections, s.Collected, s.Uncollectable)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("rendering gc report: %w", err)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " ")
}

// RenderTrace prints the trace report for people.
func RenderTrace(w io.Writer, r *TraceReport) error {
	var b strings.Builder
	switch {
	case r.Action == string(TraceStart) && r.Changed:
		fmt.Fprintf(&b, "tracemalloc started (%d frames)\n", r.Frames)
	case r.Action == string(TraceStart):
		fmt.Fprintf(&b, "tracemalloc was already tracing (%d frames); stop it first to change the depth\n", r.Frames)
	case r.Action == string(TraceStop) && r.Changed:
		fmt.Fprintf(&b, "tracemalloc stopped; it was using %s and tracing %s (peak %s)\n",
			HumanSize(r.Memory), HumanSize(r.TracedCurrent), HumanSize(r.TracedPeak))
	case r.Action == string(TraceStop):
		b.WriteString("tracemalloc was not tracing\n")
	case r.Tracing:
		fmt.Fprintf(&b, "tracemalloc is tracing, %d frames per traceback (Python %s)\n", r.Frames, r.Python)
		fmt.Fprintf(&b, "traced memory: %s (peak %s)\n", HumanSize(r.TracedCurrent), HumanSize(r.TracedPeak))
		fmt.Fprintf(&b, "tracemalloc's own memory: %s\n", HumanSize(r.Memory))
	default:
		fmt.Fprintf(&b, "tracemalloc is not tracing (Python %s)\n", r.Python)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
