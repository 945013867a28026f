package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, c := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{ms(5, 1, 3), 0.5, 3 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.9, 9 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.5, 5 * time.Millisecond},
		{ms(7), 0.9, 7 * time.Millisecond},
		{nil, 0.5, 0},
	} {
		if got := percentile(c.in, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.in, c.p, got, c.want)
		}
	}
}

// TestHarness runs the harness with stand-in commands on a real heartbeat
// target of every interpreter: one that succeeds, one that stalls the
// target (SIGSTOP for 150ms), one that fails, and one that kills the
// target; the first two with a goal for their median (met, not met).
func TestHarness(t *testing.T) {
	root := testenv.RepoRoot(t)
	cmds := []Command{
		{Name: "true", Goal: time.Minute, Argv: func(*Env, *Target) ([]string, error) { return []string{"true"}, nil }},
		{Name: "stop", Baseline: "true", Goal: 100 * time.Millisecond, Argv: func(_ *Env, tg *Target) ([]string, error) {
			return []string{"sh", "-c", "kill -STOP $0; sleep 0.15; kill -CONT $0", itoa(tg.PID)}, nil
		}},
		{Name: "fails", Argv: func(*Env, *Target) ([]string, error) { return []string{"sh", "-c", "echo oops; exit 3"}, nil }},
		{Name: "kills", Argv: func(_ *Env, tg *Target) ([]string, error) { return []string{"kill", "-9", itoa(tg.PID)}, nil }},
		{Name: "after", Argv: func(*Env, *Target) ([]string, error) { return []string{"true"}, nil }},
	}
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		rows := benchInterp(root, &Env{GDB: []string{"gdb"}, HostGDB: []string{"gdb"}}, in, cmds, regexp.MustCompile("."), 2, 0, 10*time.Second)
		if len(rows) != len(cmds) {
			t.Fatalf("%d rows, want %d", len(rows), len(cmds))
		}
		by := map[string]Row{}
		for _, r := range rows {
			by[r.Name] = r
		}
		if r := by["true"]; len(r.Times) != 2 || len(r.CPU) != 2 || r.Err != "" || r.Harm != "" {
			t.Errorf("true: %+v", r)
		}
		if r := by["stop"]; len(r.Stalls) != 2 || percentile(r.Stalls, 0.5) < 100*time.Millisecond {
			t.Errorf("stop: stalls %v, want >= 100ms", r.Stalls)
		}
		if r := by["fails"]; !strings.Contains(r.Err, "oops") {
			t.Errorf("fails: error %q lacks the command's output", r.Err)
		}
		if r := by["kills"]; r.Harm == "" {
			t.Errorf("kills: harm not reported: %+v", r)
		}
		if r := by["after"]; len(r.Times) != 2 {
			t.Errorf("after a killed target, a fresh one was not started: %+v", r)
		}
		var buf bytes.Buffer
		printTable(&buf, rows)
		if !strings.Contains(buf.String(), "HARMED TARGET") || !strings.Contains(buf.String(), "error: exit status 3: oops") ||
			!strings.Contains(buf.String(), "goal: median <= 60000.0ms, met") || !strings.Contains(buf.String(), "goal: median <= 100.0ms, NOT met") {
			t.Errorf("table:\n%s", buf.String())
		}
	})
}

func TestDefaultInterps(t *testing.T) {
	ins, err := pickInterps("default")
	if err != nil {
		t.Skipf("no default target: %v", err)
	}
	for _, in := range ins {
		if in.Major != 3 {
			t.Errorf("default target %s is not 3.x", in.Label)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestHeapTarget starts the leak rows' target (heartbeat.py behind a
// 1-million-object heap) on one 3.x and one 2.7 interpreter and checks
// that the heap is there and the heartbeat answers.
func TestHeapTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds a 1-million-object heap")
	}
	root := testenv.RepoRoot(t)
	for _, label := range []string{"2.7", "3.12"} {
		t.Run(label, func(t *testing.T) {
			in, ok := testenv.Lookup(label)
			if !ok {
				testenv.Skipf(t, "%s is not present", label)
			}
			tg, err := StartTarget(root, in, Heap)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Stop()
			if err := tg.Reset(); err != nil {
				t.Fatal(err)
			}
			if _, err := tg.Stall(); err != nil {
				t.Fatal(err)
			}
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tg.PID))
			if err != nil {
				t.Fatal(err)
			}
			var rss int
			for _, l := range strings.Split(string(st), "\n") {
				if strings.HasPrefix(l, "VmRSS:") {
					fmt.Sscanf(strings.TrimPrefix(l, "VmRSS:"), "%d", &rss)
				}
			}
			// 1M small objects: well over 50 MiB; a bare heartbeat is under 15.
			if rss < 50*1024 {
				t.Errorf("heap target's RSS is %d KiB: no heap?", rss)
			}
			if err := tg.Healthy(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestFlipShares: the leaf frame of each stack line, in pyglass's,
// Austin's and profiling.sampling's ways of naming frames, counts for
// spin or nap by its weight; other leaves and comment lines do not.
func TestFlipShares(t *testing.T) {
	in := strings.Join([]string{
		"# austin: 3.7.0",
		"Thread._bootstrap (/usr/lib/python3.13/threading.py);flipper (/tmp/pyglass-bench-1/stacks_flip.py:33);spin (/tmp/pyglass-bench-1/stacks_flip.py:21) 30",
		"P7;T0:8;/tmp/pyglass-bench-2/stacks_flip.py:flipper:33;/tmp/pyglass-bench-2/stacks_flip.py:nap:26 1005",
		"/tmp/pyglass-bench-3/stacks_flip.py:flipper:33;/tmp/pyglass-bench-3/stacks_flip.py:26:nap 20",
		"flipper (/tmp/x/stacks_flip.py:33);spinner (/tmp/x/stacks_flip.py:40) 500",
		"<module> (/tmp/x/stacks_flip.py:50) 700",
		"",
	}, "\n")
	spin, nap := flipShares(strings.NewReader(in))
	if spin != 30 || nap != 1025 {
		t.Errorf("spin %v, nap %v; want 30 and 1025", spin, nap)
	}
}
