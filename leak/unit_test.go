package leak

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCycleText(t *testing.T) {
	for _, tc := range []struct {
		steps []CycleStep
		want  string
	}{
		{nil, ""},
		{[]CycleStep{{Name: "Node", Edge: ".self"}}, "Node -> .self -> Node"},
		{[]CycleStep{
			{Name: "Node", Edge: ".parent"},
			{Name: "Node", Edge: ".children"},
			{Name: "list", Container: true, Edge: "[3]"},
		}, "Node -> .parent -> Node -> .children[3] -> Node"},
		{[]CycleStep{
			{Name: "dict", Container: true, Edge: "['a']"},
			{Name: "A", Edge: ".d"},
		}, "dict -> ['a'] -> A -> .d -> dict"},
	} {
		if got := CycleText(tc.steps); got != tc.want {
			t.Errorf("CycleText(%+v) = %q, want %q", tc.steps, got, tc.want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", -2048: "-2.0 KiB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDiff(t *testing.T) {
	before := &ObjectsReport{Total: 10, TotalSize: 1000, Types: []TypeCount{
		{"dict", 5, 500}, {"list", 5, 500}}}
	after := &ObjectsReport{Python: "3.12.1", Total: 120, TotalSize: 9000, Types: []TypeCount{
		{"dict", 4, 400}, {"list", 6, 700}, {"app.Session", 100, 6000}, {"list", 10, 1900}}}
	g := Diff(before, after)
	if g.TotalDelta != 110 || g.SizeDelta != 8000 || g.Python != "3.12.1" {
		t.Errorf("totals %+v", g)
	}
	want := []Growth{{"app.Session", 100, 100, 6000, 6000}, {"list", 16, 11, 2600, 2100}}
	if len(g.Types) != len(want) {
		t.Fatalf("types %+v, want %+v", g.Types, want)
	}
	for i := range want {
		if g.Types[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, g.Types[i], want[i])
		}
	}
	var buf bytes.Buffer
	if err := RenderGrowth(&buf, g, 1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "app.Session") || strings.Contains(buf.String(), "  list") {
		t.Errorf("render top 1:\n%s", buf.String())
	}
}

func TestDiffOverCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	census := func(context.Context) (*ObjectsReport, error) { return &ObjectsReport{}, nil }
	if _, err := DiffOver(ctx, time.Hour, census, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	boom := errors.New("boom")
	fail := func(context.Context) (*ObjectsReport, error) { return nil, boom }
	if _, err := DiffOver(context.Background(), 0, fail, nil); !errors.Is(err, boom) {
		t.Errorf("err = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := ParseGC([]byte("hello\n")); !errors.Is(err, ErrNoReport) {
		t.Errorf("no document: %v", err)
	}
	_, err := ParseTrace([]byte(`{"error": "tracemalloc is not available on Python 2.7", "kind": "unsupported"}`))
	var se *ScriptError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &se) || se.Msg == "" {
		t.Errorf("unsupported: %v", err)
	}
	if _, err := ParseObjects([]byte(`{"error": "MemoryError: "}`)); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("script error: %v", err)
	}
	// The target may print before the report: the last document wins.
	r, err := ParseGC([]byte("noise {\n{\"python\": \"3.9.18\", \"enabled\": true, \"thresholds\": [700, 10, 10]}\n"))
	if err != nil || r.Python != "3.9.18" || !r.Enabled {
		t.Errorf("parse after noise: %+v, %v", r, err)
	}
}

func TestScriptsAreOneSource(t *testing.T) {
	for name, src := range map[string][]byte{
		"garbage": GarbageScript(GarbageOptions{Collect: true, Limit: 7}),
		"objects": ObjectsScript(ObjectsOptions{Top: 3}),
		"gc":      GCScript(GCOptions{}),
		"trace":   TraceScript(TraceOptions{Action: TraceStart, Frames: 4}),
	} {
		s := string(src)
		if !strings.HasPrefix(s, "_pg_opts = {") || !strings.Contains(s, "_pg_finish(globals())") {
			t.Errorf("%s: not a complete report source", name)
		}
		if strings.Contains(s, "import json") || strings.Contains(s, "import tracemalloc") {
			t.Errorf("%s imports a Python module", name)
		}
	}
	if s := string(GarbageScript(GarbageOptions{Collect: true, Limit: 7})); !strings.HasPrefix(s, "_pg_opts = {'collect': True, 'saveall': False, 'limit': 7}") {
		t.Errorf("garbage options line: %q", strings.SplitN(s, "\n", 2)[0])
	}
	if s := string(TraceScript(TraceOptions{Action: "rm -rf"})); !strings.HasPrefix(s, "_pg_opts = {'action': 'invalid'") {
		t.Errorf("trace options line: %q", strings.SplitN(s, "\n", 2)[0])
	}
}

// Example shows the life cycle of a report: build the script, run it in
// the target with pyglass's exec (here: a canned output), parse, render.
func Example() {
	script := GCScript(GCOptions{})
	_ = script // exec(script) in the target returns its stdout:
	out := []byte(`{"python": "3.12.1", "enabled": true, "thresholds": [700, 10, 10], "counts": [12, 3, 0], "flags": [], "flag_bits": 0, "garbage_len": 0, "stats": null, "frozen": 0}`)
	r, err := ParseGC(out)
	if err != nil {
		panic(err)
	}
	RenderGC(os.Stdout, r)
	// Output:
	// gc enabled (Python 3.12.1)
	// thresholds:  700 10 10
	// counts:      12 3 0
	// debug flags: none (0)
	// gc.garbage:  0 objects
	// frozen:      0 objects
}

// The pieces a report is compiled in: together they are the report's
// source, each but the first starts a top-level statement, and only a
// piece that is one statement is larger than chunkSize.
func TestReportChunks(t *testing.T) {
	for _, body := range []string{objectsPy + "\n" + pathsPy, objectsPy + "\n" + traceTopPy, garbagePy, gcPy, tracePy} {
		src := commonPy + "\n" + body + "\n" + footerPy
		parts := chunks(src, chunkSize)
		if strings.Join(parts, "") != src {
			t.Fatalf("the pieces are not the source")
		}
		if len(src) > 4*chunkSize && len(parts) < len(src)/(2*chunkSize) {
			t.Errorf("%d bytes in %d pieces", len(src), len(parts))
		}
		for i, p := range parts {
			if i > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\n' || !strings.HasSuffix(parts[i-1], "\n\n\n")) {
				t.Errorf("piece %d starts inside a statement: %.40q", i, p)
			}
			if len(p) > chunkSize && len(chunks(p, 1)) > 1 {
				t.Errorf("piece %d: %d bytes, could be cut", i, len(p))
			}
		}
	}
	if got := chunks("a\n\n\n\nb\n\n\n  c\n\n\nd", 1); strings.Join(got, "|") != "a\n\n\n\n|b\n\n\n  c\n\n\n|d" {
		t.Errorf("chunks: %q", got)
	}
}
