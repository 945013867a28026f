package profile

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// sample builds a profile of two threads: main in a (3 times) then b (1),
// worker in c (2), with a recursive frame to check totals count it once.
func sample(timeline bool) *Profile {
	t0 := time.Unix(1000, 0)
	p := New(t0, 100)
	p.Timeline = timeline
	m := Thread{PID: 1, TID: 1, Name: "MainThread"}
	w := Thread{PID: 1, TID: 2, Name: "worker"}
	mod := Frame{"<module>", "m.py", 1}
	a := Frame{"a", "m.py", 5}
	b := Frame{"b", "m.py", 9}
	c := Frame{"c", "w.py", 3}
	for i := 0; i < 3; i++ {
		p.Add(m, []Frame{mod, a, a}, t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	p.Add(m, []Frame{mod, b}, t0.Add(30*time.Millisecond))
	p.Add(w, []Frame{c}, t0.Add(0))
	p.Add(w, []Frame{c}, t0.Add(10*time.Millisecond))
	p.Duration = 40 * time.Millisecond
	return p
}

func TestTopAndTally(t *testing.T) {
	p := sample(false)
	top := p.Top(0)
	got := map[string][2]int64{}
	for _, f := range top {
		got[f.Function] = [2]int64{f.Own, f.Total}
	}
	want := map[string][2]int64{"a": {3, 3}, "c": {2, 2}, "b": {1, 1}, "<module>": {0, 4}}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: own/total %v, want %v", k, got[k], v)
		}
	}
	if top[0].Function != "a" || p.Total() != 6 {
		t.Errorf("top %v, total %d", top, p.Total())
	}
	tl := NewTally()
	tl.Add([]Frame{{"x", "f", 1}, {"x", "f", 2}}, true)
	tl.Add([]Frame{{"y", "f", 1}}, false)
	if s := tl.Top(0, ByTotal); len(s) != 2 || s[0].Own != 1 || s[0].Total != 1 || tl.GIL() != 1 || tl.Stacks() != 2 {
		t.Errorf("tally %+v gil %d stacks %d", s, tl.GIL(), tl.Stacks())
	}
	tl.Reset()
	if tl.Stacks() != 0 || len(tl.Top(0, ByOwn)) != 0 {
		t.Errorf("reset left %d stacks", tl.Stacks())
	}
}

func TestWriters(t *testing.T) {
	p := sample(true)
	var b bytes.Buffer
	if err := p.Write(&b, Collapsed); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "<module> (m.py:1);a (m.py:5);a (m.py:5) 3\n") || !strings.Contains(b.String(), "c (w.py:3) 2\n") {
		t.Errorf("collapsed:\n%s", b.String())
	}
	b.Reset()
	if err := p.Write(&b, Pprof); err != nil {
		t.Fatal(err)
	}
	pp, err := profile.Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range pp.Sample {
		n += s.Value[0]
		if s.Value[1] != s.Value[0]*int64(10*time.Millisecond) {
			t.Errorf("wall %d for %d samples at 100/s", s.Value[1], s.Value[0])
		}
	}
	if n != 6 {
		t.Errorf("pprof has %d samples, want 6", n)
	}
	b.Reset()
	if err := p.Write(&b, Speedscope); err != nil {
		t.Fatal(err)
	}
	var ss ssFile
	if err := json.Unmarshal(b.Bytes(), &ss); err != nil || len(ss.Profiles) != 1 || len(ss.Shared.Frames) != 4 {
		t.Errorf("speedscope: %v %+v", err, ss)
	}
	for _, timeline := range []bool{true, false} {
		b.Reset()
		if err := sample(timeline).Write(&b, Chrome); err != nil {
			t.Fatal(err)
		}
		var tr struct {
			TraceEvents []map[string]any `json:"traceEvents"`
		}
		if err := json.Unmarshal(b.Bytes(), &tr); err != nil {
			t.Fatalf("chrome (timeline %v): %v\n%s", timeline, err, b.String())
		}
		begins, ends := 0, 0
		for _, e := range tr.TraceEvents {
			switch e["ph"] {
			case "B":
				begins++
			case "E":
				ends++
			}
		}
		if begins != ends || (timeline && begins == 0) {
			t.Errorf("chrome (timeline %v): %d begins, %d ends", timeline, begins, ends)
		}
	}
}

func TestFormatFromPath(t *testing.T) {
	for path, want := range map[string]Format{"x.pb.gz": Pprof, "x.txt": Collapsed, "x.json": Speedscope, "x.trace.json": Chrome} {
		if f, ok := FormatFromPath(path); !ok || f != want {
			t.Errorf("%s: %v %v, want %v", path, f, ok, want)
		}
	}
	if _, err := ParseFormat("svg"); err == nil {
		t.Errorf("svg accepted")
	}
}

// TestAddAgain: a thread sampled again in the same place is counted on
// the stack it had (Add's shortcut), and a change of a line, a frame or
// the thread is a stack of its own.
func TestAddAgain(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := New(t0, 100)
	p.Timeline = true
	main, worker := Thread{PID: 1, TID: 1, Name: "main"}, Thread{PID: 1, TID: 2, Name: "w"}
	f := []Frame{{"main", "m.py", 3}, {"work", "w.py", 10}}
	g := []Frame{{"main", "m.py", 3}, {"work", "w.py", 11}}
	adds := []struct {
		th     Thread
		frames []Frame
	}{{main, f}, {main, f}, {worker, f}, {main, g}, {main, f}, {main, f[:1]}, {worker, f}}
	for i, a := range adds {
		p.Add(a.th, a.frames, t0.Add(time.Duration(i)*time.Second))
	}
	type key struct {
		tid   int
		line  int
		depth int
	}
	got := map[key]int64{}
	for _, s := range p.Stacks() {
		last := p.Frames()[s.Frames[len(s.Frames)-1]]
		got[key{p.Threads()[s.Thread].TID, last.Line, len(s.Frames)}] += s.Count
	}
	want := map[key]int64{{1, 10, 2}: 3, {2, 10, 2}: 2, {1, 11, 2}: 1, {1, 3, 1}: 1}
	if len(p.Stacks()) != len(want) || p.Total() != int64(len(adds)) {
		t.Fatalf("%d stacks, %d samples; want %d, %d", len(p.Stacks()), p.Total(), len(want), len(adds))
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("stack %+v counted %d times, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if s := p.Stacks()[0]; s.First != 0 || s.Last != 4*time.Second {
		t.Errorf("first stack seen from %v to %v, want 0s to 4s", s.First, s.Last)
	}
	if len(p.timeline) != len(adds) || p.timeline[1].stack != p.timeline[0].stack || p.timeline[4].stack != p.timeline[0].stack {
		t.Errorf("timeline %+v", p.timeline)
	}
}

// TestPprofAsLibrary: WritePprof's hand-made protobuf reads back, with
// google/pprof's parser, as the very profile that package builds and
// writes from the same samples (its String lists every sample with its
// values, labels and locations, every location and function); and
// google/pprof finds it valid.
func TestPprofAsLibrary(t *testing.T) {
	for _, p := range []*Profile{sample(false), New(time.Unix(5, 0), 1000), unusual()} {
		var b bytes.Buffer
		if err := p.WritePprof(&b); err != nil {
			t.Fatal(err)
		}
		got, err := profile.Parse(&b)
		if err != nil {
			t.Fatal(err)
		}
		if err := got.CheckValid(); err != nil {
			t.Fatalf("google/pprof finds the profile invalid: %v", err)
		}
		b.Reset()
		if err := pprofByLibrary(p).Write(&b); err != nil {
			t.Fatal(err)
		}
		want, err := profile.Parse(&b)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("pprof written by pyglass:\n%s\nby google/pprof:\n%s", got, want)
		}
	}
}

// unusual is a profile with what the others lack: a thread without a
// name, a frame without a file, a line 0, large and non-ASCII values, a
// function in two files.
func unusual() *Profile {
	t0 := time.Unix(1700000000, 123)
	p := New(t0, 9999)
	th := Thread{PID: 1 << 22, TID: 1<<22 + 7}
	p.Add(th, []Frame{{"<module>", "", 0}, {"f", "a.py", 1 << 20}, {"f", "b.py", 3}, {"ünï", "ç.py", 2}}, t0)
	p.Add(Thread{PID: 1, TID: 1, Name: "ß thread"}, []Frame{{"f", "a.py", 1 << 20}}, t0)
	p.Duration = 3 * time.Hour
	return p
}

// pprofByLibrary builds p's pprof profile with google/pprof's package, as
// WritePprof did before it wrote the protobuf itself.
func pprofByLibrary(p *Profile) *profile.Profile {
	per := p.period()
	pp := &profile.Profile{
		SampleType:        []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "wall", Unit: "nanoseconds"}},
		DefaultSampleType: "wall",
		PeriodType:        &profile.ValueType{Type: "wall", Unit: "nanoseconds"},
		Period:            int64(per),
		TimeNanos:         p.Start.UnixNano(),
		DurationNanos:     int64(p.Duration),
	}
	funcs := map[[2]string]*profile.Function{}
	locs := make([]*profile.Location, len(p.frames))
	for i, fr := range p.frames {
		k := [2]string{fr.Function, fr.File}
		fn := funcs[k]
		if fn == nil {
			fn = &profile.Function{ID: uint64(len(pp.Function) + 1), Name: fr.Function, SystemName: fr.Function, Filename: fr.File}
			funcs[k] = fn
			pp.Function = append(pp.Function, fn)
		}
		locs[i] = &profile.Location{ID: uint64(i + 1), Line: []profile.Line{{Function: fn, Line: int64(fr.Line)}}}
		pp.Location = append(pp.Location, locs[i])
	}
	for _, s := range p.stacks {
		th := p.threads[s.Thread]
		smp := &profile.Sample{
			Value:    []int64{s.Count, s.Count * int64(per)},
			NumLabel: map[string][]int64{"thread_id": {int64(th.TID)}, "pid": {int64(th.PID)}},
		}
		if th.Name != "" {
			smp.Label = map[string][]string{"thread": {th.Name}}
		}
		for i := len(s.Frames) - 1; i >= 0; i-- {
			smp.Location = append(smp.Location, locs[s.Frames[i]])
		}
		pp.Sample = append(pp.Sample, smp)
	}
	return pp
}
