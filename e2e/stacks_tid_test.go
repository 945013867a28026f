package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// lineValue returns the value of key=V in the target's first line that
// starts with prefix, 0 when absent.
func lineValue(t testing.TB, tg *testenv.Target, prefix, key string) int {
	t.Helper()
	for _, l := range tg.Stdout() {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				return n
			}
		}
	}
	return 0
}

func comm(pid, tid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", pid, tid))
	return strings.TrimSpace(string(b))
}

// checkTIDs fails unless every thread of d is a task of pid (or unknown,
// 0, with the state unknown or gone) and no thread is listed twice.
func checkTIDs(t testing.TB, pid int, d *pyglass.StackDump, mode []string) {
	t.Helper()
	live := map[int]bool{}
	for _, tid := range tasks(pid) {
		live[tid] = true
	}
	seen := map[int]bool{}
	for _, th := range d.Threads {
		if th.TID == 0 {
			// gone: its native_thread_id names no thread of the
			// process (3.11+), else unknown.
			if th.State != "unknown" && th.State != "gone" {
				t.Errorf("%v: thread %q of no known task has state %q", mode, th.Name, th.State)
			}
			continue
		}
		if !live[th.TID] {
			t.Errorf("%v: thread %q has tid %d, not a task of %d (tasks %v)", mode, th.Name, th.TID, pid, tasks(pid))
		}
		if seen[th.TID] {
			t.Errorf("%v: tid %d listed twice", mode, th.TID)
		}
		seen[th.TID] = true
	}
}

// TestStacksRawForkChild: in a child made by a raw fork() (no
// PyOS_AfterFork_Child, as uwsgi's workers), on every interpreter, with
// and without threading imported and a thread started before the fork:
// the main thread is shown with the child's own id (never the parent's),
// a known state and the kernel's name when threading does not name it;
// the parent's thread, a thread state of no task in the child, is never
// given a tid; info agrees on the names.
func TestStacksRawForkChild(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, mode := range []string{"plain", "threads"} {
			t.Run(mode, func(t *testing.T) {
				tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_rawfork.py"), testenv.Args(mode))
				child := lineValue(t, tg, "CHILD ", "pid")
				parent := lineValue(t, tg, "PARENT ", "pid")
				helper := lineValue(t, tg, "PARENT ", "helper")
				if child == 0 || parent != tg.PID || (mode == "threads") != (helper != 0) {
					t.Fatalf("fixture output: %q", tg.Stdout())
				}
				for _, m := range [][]string{nil, {"--nonblocking"}} {
					d := stacksJSON(t, child, m...)
					checkTIDs(t, child, d, m)
					main := d.Threads[0]
					if !main.Main || main.TID != child {
						t.Errorf("%v: main thread %+v, want tid %d (the parent is %d)", m, main, child, parent)
					}
					if n := len(main.Frames); n == 0 || main.Frames[n-1].Function != "child_wait" {
						t.Errorf("%v: main thread's frames %s", m, fmtFrames(main.Frames))
					}
					if main.State == "unknown" || main.State == "" {
						t.Errorf("%v: main thread's state %q", m, main.State)
					}
					wantName := comm(child, child) // the kernel's name
					if lineValue(t, tg, "PARENT ", "threading") == 1 {
						wantName = "MainThread"
					}
					if main.Name != wantName {
						t.Errorf("%v: main thread named %q, want %q", m, main.Name, wantName)
					}
					for _, th := range d.Threads {
						if th.TID == parent || th.TID == helper {
							t.Errorf("%v: thread %q shown with the parent's tid %d", m, th.Name, th.TID)
						}
					}
				}
				// info names the child's threads as stacks does.
				r := run(t, nil, "info", "--json", strconv.Itoa(child))
				want(t, r, 0)
				var info pyglass.Info
				if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
					t.Fatalf("info JSON: %v\n%s", err, clip(r.Stdout))
				}
				d := stacksJSON(t, child)
				for _, ti := range info.Threads {
					for _, th := range d.Threads {
						if th.TID == ti.TID && th.Name != ti.Name {
							t.Errorf("thread %d: info names it %q, stacks %q", ti.TID, ti.Name, th.Name)
						}
					}
				}
				healthy(t, tg)
			})
		}
	})
}

// TestStacksTIDsInPIDNamespace: a target in its own PID namespace (a
// container) is shown with our ids for its threads, in both modes, every
// one a task of the process and each named.
func TestStacksTIDsInPIDNamespace(t *testing.T) {
	forLabels(t, []string{"2.7", "3.12"}, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.NewPIDNS(), testenv.Args("threads=2"))
		if tg.NSPID == tg.PID {
			t.Fatalf("target %d is not in another PID namespace", tg.PID)
		}
		for _, m := range [][]string{nil, {"--nonblocking"}} {
			d := stacksJSON(t, tg.PID, m...)
			checkTIDs(t, tg.PID, d, m)
			if len(d.Threads) != 3 || d.Threads[0].TID != tg.PID || d.Threads[0].Name != "MainThread" {
				t.Errorf("%v: threads %+v, want MainThread with tid %d and 2 workers", m, d.Threads, tg.PID)
			}
			for _, th := range d.Threads {
				if th.TID == 0 || th.State == "unknown" {
					t.Errorf("%v: thread %+v, want its tid and state", m, th)
				}
			}
		}
		healthy(t, tg)
	})
}
