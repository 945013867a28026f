package leak

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// traceFixture grows KEEP by n bytearrays of 10,000 bytes at the line
// marked GROW, called from the line marked CALL.
const traceFixture = `
KEEP = []
def grow(n):
    for i in range(n):
        KEEP.append(bytearray(10000))  # GROW
def outer(n):
    grow(n)  # CALL
for m in ('gc', 'time', '_tracemalloc'):
    sys.modules.pop(m, None)
def probe():
    return snapshot([KEEP, grow])
`

func findTraceGrowth(g TraceGrowthReport, file string, line int) *TraceGrowth {
	for i := range g.Groups {
		if f := g.Groups[i].Frames; len(f) > 0 && f[0].File == file && f[0].Line == line {
			return &g.Groups[i]
		}
	}
	return nil
}

// TestTraceTop: trace top starts tracemalloc when it is off (and says so),
// and its diff over an interval in which the fixture keeps 500 blocks of
// 10,000 bytes names the allocating line (by line), the file (by file) and
// the call chain (by traceback, 5 frames), with the growth's size within
// 10 % and at least the count made; pyglass's own allocations are left
// out, and a report run while tracing leaves the target as it was. 2.7
// has no tracemalloc: ErrUnsupported.
func TestTraceTop(t *testing.T) {
	forEach(t, true, func(t *testing.T, py interpreter) {
		h := startHarness(t, py)
		if py.py2 {
			_, err := ParseTraceTop(h.run(TraceTopScript(TraceTopOptions{})))
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "not available on Python 2.7") {
				t.Fatalf("2.7 trace top error = %v", err)
			}
			return
		}
		h.exec(traceFixture, nil)
		grow, call := testenv.MarkedLine(t, traceFixture, "GROW"), testenv.MarkedLine(t, traceFixture, "CALL")
		const n, size = 500, 10000
		first := true
		for _, c := range []struct {
			by     TraceGrouping
			frames int
			line   int // 0: by file
			stack  []int
			exact  bool
		}{
			{ByTraceback, 5, grow, []int{grow, call}, false},
			{ByLine, 0, grow, nil, false},
			{ByFile, 0, 0, nil, false},
			{ByTraceback, 5, grow, []int{grow, call}, true},
			{ByLine, 0, grow, nil, true},
			{ByFile, 0, 0, nil, true},
		} {
			script := TraceTopScript(TraceTopOptions{By: c.by, Frames: c.frames, Exact: c.exact})
			calls := 0
			top := func(ctx context.Context) (*TraceTopReport, error) {
				if calls == 1 {
					h.exec("outer(500)", nil)
				}
				calls++
				return ParseTraceTop(h.run(script))
			}
			var progress bytes.Buffer
			g, err := TraceDiffOver(context.Background(), 500*time.Millisecond, top, &progress)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := RenderTraceGrowth(&buf, g, 5); err != nil {
				t.Fatal(err)
			}
			t.Logf("by %s, exact %v:\n%s", c.by, c.exact, buf.String())
			if g.Started != first {
				t.Errorf("by %s: started = %v, want %v (tracing was off only before the first)", c.by, g.Started, first)
			}
			if method := map[bool]string{false: "walk", true: "exact"}[c.exact]; g.Method != method {
				t.Errorf("method %q, want %q", g.Method, method)
			}
			if first && (!strings.Contains(buf.String(), "was not tracing: started") || !strings.Contains(progress.String(), "tracemalloc started (5 frames)")) {
				t.Errorf("the report does not say it started tracemalloc:\n%s\n%s", buf.String(), progress.String())
			}
			first = false
			if g.By != c.by || g.Frames != 5 {
				t.Errorf("by %q frames %d, want %s and 5", g.By, g.Frames, c.by)
			}
			row := findTraceGrowth(g, "fixture.py", c.line)
			if row == nil || g.Groups[0].Frames[0] != row.Frames[0] {
				t.Fatalf("by %s: fixture.py:%d is not the top growth: %+v", c.by, c.line, g.Groups[:min(3, len(g.Groups))])
			}
			if lo, hi := int64(n*size), int64(n*size*11/10); row.SizeDelta < lo || row.SizeDelta > hi {
				t.Errorf("by %s: grew %d bytes, want %d within 10 %%", c.by, row.SizeDelta, lo)
			}
			if row.CountDelta < n || (c.exact && row.CountDelta < 2*n) {
				t.Errorf("by %s: %d blocks more, want at least %d", c.by, row.CountDelta, n)
			}
			for i, l := range c.stack {
				if i >= len(row.Frames) || row.Frames[i].Line != l || row.Frames[i].File != "fixture.py" {
					t.Errorf("traceback %+v, want fixture.py lines %v first", row.Frames, c.stack)
					break
				}
			}
			for _, r := range g.Groups {
				for _, f := range r.Frames {
					if strings.HasPrefix(f.File, "<pyglass") {
						t.Errorf("pyglass's own allocation reported: %+v", r)
					}
				}
			}
		}
		// One report alone, tracing on: nothing changes in the target;
		// exact, the groups sum to the traced total (less pyglass's own;
		// the target allocates meanwhile: 5 %).
		for _, exact := range []bool{false, true} {
			var before, after state
			h.exec("result = probe()", &before)
			h.run(TraceTopScript(TraceTopOptions{Exact: exact}))
			h.exec("result = probe()", &after)
			if before.String() != after.String() {
				t.Errorf("trace top (exact %v) changed the target:\nbefore %s\nafter  %s", exact, before, after)
			}
		}
		r, err := ParseTraceTop(h.run(TraceTopScript(TraceTopOptions{Exact: true})))
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, g := range r.Groups {
			sum += g.Size
		}
		if r.Started || r.Truncated || float64(sum+r.OwnSize) > 1.05*float64(r.TracedCurrent) || sum < n*size*3 {
			t.Errorf("report: started %v truncated %v, groups sum %d + own %d, traced %d", r.Started, r.Truncated, sum, r.OwnSize, r.TracedCurrent)
		}
		var buf bytes.Buffer
		if err := RenderTraceTop(&buf, r, 3); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "fixture.py:") || strings.Count(buf.String(), "\n") > 8 {
			t.Errorf("render:\n%s", buf.String())
		}
		t.Logf("\n%s", buf.String())
		h.exec("tracemalloc.stop()", nil)
	})
}

// TestTraceTopUsage: a bad grouping or depth is a usage error.
func TestTraceTopUsage(t *testing.T) {
	for _, o := range []TraceTopOptions{{By: "bogus"}, {Frames: MaxTraceFrames + 1}, {Frames: -1}} {
		if s := string(TraceTopScript(o)); !strings.HasPrefix(s, "_pg_opts = {'by': 'invalid'") {
			t.Errorf("%+v: %.40s", o, s)
		}
	}
}

// TestTraceTopHeap: trace top's walk on a heap of a million traced objects
// holds the GIL no longer than the objects census does on the same heap
// (the baseline, measured in the same run by the target's heartbeat
// thread: at most twice its stall plus 5 ms, asserted when the machine is
// not overloaded; its own longest run at most three times the census's
// plus 10 ms, both in the thread's CPU time), and finds the Node objects by their line; the
// exact method's one call is measured and reported. Representative
// interpreters as TestBigHeap (PYGLASS_BIGHEAP_ALL=1: all), one at a time.
func TestTraceTopHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: million-object heaps")
	}
	all := os.Getenv("PYGLASS_BIGHEAP_ALL") == "1"
	forEach(t, false, func(t *testing.T, py interpreter) {
		if py.py2 {
			testenv.Skipf(t, "Python 2.7 has no tracemalloc")
		}
		if !all && !bigHeapPythons[py.name] {
			testenv.Skipf(t, "covered by the representative interpreters; PYGLASS_BIGHEAP_ALL=1 runs all")
		}
		h := startHarness(t, py)
		h.exec("tracemalloc.start()", nil)
		h.exec(heapFixture, nil)
		line := testenv.MarkedLine(t, heapFixture, "NODE")
		stall := h.stall
		census, out := stall(ObjectsScript(ObjectsOptions{Top: 5}))
		o := parseObjects(t, out)
		walk, out := stall(TraceTopScript(TraceTopOptions{}))
		r, err := ParseTraceTop(out)
		if err != nil {
			t.Fatal(err)
		}
		if r.LongestHoldMS > 3*o.LongestHoldMS+10 || walk > 2*census+5 {
			// One outlier (a collection of the target's heap that fell
			// in one of the walk's runs: 32.5 ms against 5.9 ms once in
			// CI, at a load of 0.9) is measured again, census included,
			// before failing, as in TestPathsHeap.
			t.Logf("over the bound (run %.1f ms, stall %.1f ms; census %.1f ms, %.1f ms): measured again", r.LongestHoldMS, walk, o.LongestHoldMS, census)
			census, out = stall(ObjectsScript(ObjectsOptions{Top: 5}))
			o = parseObjects(t, out)
			walk, out = stall(TraceTopScript(TraceTopOptions{}))
			if r, err = ParseTraceTop(out); err != nil {
				t.Fatal(err)
			}
		}
		exact, out := stall(TraceTopScript(TraceTopOptions{Exact: true}))
		x, err := ParseTraceTop(out)
		if err != nil {
			t.Fatal(err)
		}
		h.exec("tracemalloc.stop()", nil)
		t.Logf("1M traced objects: heartbeat's longest stall: objects census %.1f ms (%.0f ms in all, longest run %.1f ms), trace top %.1f ms (%.0f ms in all, longest run %.1f ms), --exact %.1f ms (%d blocks, one call %.1f ms, %.0f ms in all); load %.1f per CPU",
			census, o.ElapsedMS, o.LongestHoldMS, walk, r.ElapsedMS, r.LongestHoldMS, exact, x.Traces, x.LongestHoldMS, x.ElapsedMS, testenv.LoadPerCPU())
		if r.Method != "walk" || !r.Complete || len(r.Groups) == 0 {
			t.Fatalf("walk: method %q complete %v, %d groups", r.Method, r.Complete, len(r.Groups))
		}
		// The node line made 250,000 Nodes (and before 3.11 their
		// __dict__s there too). 3.11's _get_object_traceback cannot see
		// instances (a CPython bug): the report says so, and the exact
		// method must count them.
		nodeRows := r.Groups
		if py.minor == 11 {
			if !strings.Contains(strings.Join(r.Notes, "\n"), "tracemalloc cannot tell where instances") {
				t.Errorf("3.11: notes %q", r.Notes)
			}
			nodeRows = x.Groups
		}
		var nodes int64
		for _, g := range nodeRows {
			if g.Frames[0].File == "fixture.py" && g.Frames[0].Line == line {
				nodes = g.Count
			}
		}
		if nodes < 250000 || nodes > 500000 {
			t.Errorf("the walk found %d objects from the Node line, want 250,000 to 500,000: %+v", nodes, r.Groups[:min(4, len(r.Groups))])
		}
		// The walk's own longest run between pauses, against the
		// census's; the heartbeat's stall (which also measures CPU
		// contention) only when the machine is not overloaded.
		checkHolds(t, "trace top", r.LongestHoldMS, walk, o.LongestHoldMS, census)
		if x.Method != "exact" || x.Traces < 1000000 {
			t.Errorf("exact: method %q, %d blocks", x.Method, x.Traces)
		}
	})
}
