package leak

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// GrowthReport lists the types whose number of objects grew between two
// censuses, most growth first (objgraph's show_growth).
type GrowthReport struct {
	Python string `json:"python"`
	// Interval is the time between the censuses in seconds, when known.
	Interval float64 `json:"interval_s,omitempty"`
	// TotalDelta and SizeDelta are the changes of the whole census.
	TotalDelta int64    `json:"total_delta"`
	SizeDelta  int64    `json:"size_delta"`
	Types      []Growth `json:"types"`
}

// Growth is one type that grew.
type Growth struct {
	Type       string `json:"type"`
	Count      int64  `json:"count"`
	CountDelta int64  `json:"count_delta"`
	Size       int64  `json:"size"`
	SizeDelta  int64  `json:"size_delta"`
}

// Diff compares two censuses of the same process. Types are matched by
// name; a type missing from before counts from zero. Only the types whose
// count grew are listed, so both censuses should keep every type
// (ObjectsOptions.Top = 0).
func Diff(before, after *ObjectsReport) GrowthReport {
	prev := make(map[string]TypeCount, len(before.Types))
	for _, t := range before.Types {
		p := prev[t.Type]
		p.Count += t.Count
		p.Size += t.Size
		prev[t.Type] = p
	}
	cur := make(map[string]TypeCount, len(after.Types))
	for _, t := range after.Types {
		c := cur[t.Type]
		c.Type = t.Type
		c.Count += t.Count
		c.Size += t.Size
		cur[t.Type] = c
	}
	g := GrowthReport{
		Python:     after.Python,
		TotalDelta: after.Total - before.Total,
		SizeDelta:  after.TotalSize - before.TotalSize,
		Types:      []Growth{},
	}
	for name, c := range cur {
		p := prev[name]
		if c.Count > p.Count {
			g.Types = append(g.Types, Growth{Type: name, Count: c.Count, CountDelta: c.Count - p.Count,
				Size: c.Size, SizeDelta: c.Size - p.Size})
		}
	}
	sort.Slice(g.Types, func(i, j int) bool {
		a, b := g.Types[i], g.Types[j]
		if a.CountDelta != b.CountDelta {
			return a.CountDelta > b.CountDelta
		}
		return a.Type < b.Type
	})
	return g
}

// RenderGrowth prints a GrowthReport for people; top > 0 keeps that many
// rows.
func RenderGrowth(w io.Writer, g GrowthReport, top int) error {
	var b strings.Builder
	if g.Interval > 0 {
		fmt.Fprintf(&b, "growth over %s: ", time.Duration(g.Interval*float64(time.Second)).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "%+d objects, %s\n", g.TotalDelta, signedSize(g.SizeDelta))
	if len(g.Types) == 0 {
		b.WriteString("no type grew\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("\n")
	tw := table(&b)
	fmt.Fprintln(tw, "COUNT\tGROWTH\tSIZE\tSIZE GROWTH\t  TYPE\t")
	for i, t := range g.Types {
		if top > 0 && i >= top {
			break
		}
		fmt.Fprintf(tw, "%d\t%+d\t%s\t%s\t  %s\t\n", t.Count, t.CountDelta, HumanSize(t.Size), signedSize(t.SizeDelta), t.Type)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("rendering growth: %w", err)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Census takes one objects census of the target (ObjectsScript with Top 0
// run through exec, then ParseObjects).
type Census func(ctx context.Context) (*ObjectsReport, error)

// DiffOver takes a census, waits d while writing a progress line to
// progress (nil: none), takes another and returns their Diff. It returns
// the first census error, or ctx.Err() when cancelled while waiting.
func DiffOver(ctx context.Context, d time.Duration, census Census, progress io.Writer) (_ GrowthReport, err error) {
	defer recoverReport(&err, "objects growth")
	before, err := census(ctx)
	if err != nil {
		return GrowthReport{}, fmt.Errorf("taking first census: %w", err)
	}
	start := time.Now()
	if err := countdown(ctx, d, progress, fmt.Sprintf("first census: %d objects", before.Total), "second census"); err != nil {
		return GrowthReport{}, err
	}
	after, err := census(ctx)
	if err != nil {
		return GrowthReport{}, fmt.Errorf("taking second census: %w", err)
	}
	g := Diff(before, after)
	g.Interval = time.Since(start).Seconds()
	return g, nil
}

// countdown waits d, redrawing "FIRST; NEXT in 12s" on progress (nil:
// nothing) every second, then "taking NEXT...". It returns ctx.Err() when
// cancelled first.
func countdown(ctx context.Context, d time.Duration, progress io.Writer, first, next string) error {
	end := time.Now().Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timer := time.NewTimer(d)
	defer timer.Stop()
	show := func() {
		if progress != nil {
			left := time.Until(end).Round(time.Second)
			if left < 0 {
				left = 0
			}
			fmt.Fprintf(progress, "\r%s; %s in %s   ", first, next, left)
		}
	}
	show()
	for {
		select {
		case <-ctx.Done():
			if progress != nil {
				fmt.Fprintln(progress)
			}
			return ctx.Err()
		case <-tick.C:
			show()
		case <-timer.C:
			if progress != nil {
				fmt.Fprintf(progress, "\rtaking %s...%30s\n", next, "")
			}
			return nil
		}
	}
}
