package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// taskTruth is one task of the "TRUTH <json>" line of
// testdata/asyncio_tasks.py.
type taskTruth struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	State     string          `json:"state"`
	Running   bool            `json:"running"`
	Thread    int             `json:"thread"`
	Exception string          `json:"exception"`
	Loop      string          `json:"loop"`
	Stack     []pyglass.Frame `json:"stack"`
	Awaits    []string        `json:"awaits"`
	SleepWhen *float64        `json:"sleep_when"`
}

// manyTasks is how many extra sleeping tasks the fixture starts.
const manyTasks = 1000

// TestTasksMatchTruth runs `pyglass tasks --json --all` on a target with
// nested gathers, shield, wait_for, a lock held by another task, an await
// cycle, a TaskGroup (3.11+), 1,000 sleeping tasks, a task finished with
// an exception and a second event loop in another thread, and compares
// every task with what the target itself reported through asyncio
// (all_tasks, each coroutine's cr_await chain and frame lines, each task's
// _fut_waiter): task for task, frame for frame, edge for edge. This is
// also the live check of the _asyncio offsets of cpython/asyncio_layout.go
// (loop, state, exception, name, coroutine, awaited future, frames).
func TestTasksMatchTruth(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 7) {
			testenv.Skipf(t, "Python %s has no task names and no _asyncio registries pyglass reads (3.7+)", in.Version())
		}
		started := time.Now()
		tg := testenv.Start(t, in, testenv.Fixture(t, "asyncio_tasks.py"), testenv.Args("many="+strconv.Itoa(manyTasks)))
		pid := strconv.Itoa(tg.PID)
		pending, c := checkTruth(t, in, tg, started, manyTasks, false)
		// The table and the tree show the same tasks, and the cycle.
		text := run(t, nil, "tasks", pid)
		want(t, text, 0)
		tree := run(t, nil, "tasks", "--tree", pid)
		want(t, tree, 0)
		for _, out := range []string{text.Stdout, tree.Stdout} {
			if !strings.Contains(out, "Await cycles (1):") || !strings.Contains(out, c[0]+" ") {
				t.Errorf("output without the cycle:\n%s", clip(out))
			}
		}
		// The sleeps of an hour, with the time left.
		if !strings.Contains(text.Stdout, ", due in 59m") || !strings.Contains(tree.Stdout, " awaiting sleep, due in 59m") {
			t.Errorf("no sleep with its time left:\n%s", clip(text.Stdout))
		}
		// A gather of 12 tasks shows 8 and folds the other 4.
		if !strings.Contains(tree.Stdout, "  ... and 4 more tasks\n") {
			t.Errorf("tree without the folded gather:\n%s", clip(tree.Stdout))
		}
		if in.AtLeast(3, 8) && !strings.Contains(tree.Stdout, `"gather-outer" in outer_gather`) {
			t.Errorf("tree without the gather's root:\n%s", clip(tree.Stdout))
		}
		csv := run(t, nil, "tasks", "--csv", pid)
		want(t, csv, 0)
		if n := strings.Count(csv.Stdout, "\n"); n != pending+1 {
			t.Errorf("csv has %d lines, want %d", n, pending+1)
		}
		healthy(t, tg)
	})
}

// checkTruth runs `pyglass tasks --json --all` on tg, a target of
// testdata/asyncio_tasks.py started at started, and fails unless every
// task matches the truth the target printed (a sleep's deadline too). It returns the number of pending tasks and
// the await cycle.
func checkTruth(t *testing.T, in testenv.Interp, tg *testenv.Target, started time.Time, many int, pure bool) (pending int, cycle []string) {
	t.Helper()
	pid := strconv.Itoa(tg.PID)
	line := ""
	for _, l := range tg.Stdout() {
		if strings.HasPrefix(l, "TRUTH ") {
			line = strings.TrimPrefix(l, "TRUTH ")
		}
	}
	var truth struct {
		Tasks     []taskTruth `json:"tasks"`
		Monotonic float64     `json:"monotonic"`
	}
	if err := json.Unmarshal([]byte(line), &truth); err != nil {
		t.Fatalf("decoding the fixture's truth: %v", err)
	}
	r := run(t, nil, "tasks", "--json", "--all", pid)
	want(t, r, 0)
	// An upper bound of the time from the truth to pyglass's snapshot.
	since := time.Since(started).Seconds()
	var d pyglass.TaskDump
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decoding tasks JSON: %v\n%s", err, clip(r.Stdout))
	}
	got := map[string]pyglass.AsyncTask{}
	for _, task := range d.Tasks {
		got[task.ID] = task
	}
	pendingTruth := 0
	names := map[string]string{}
	for _, w := range truth.Tasks {
		names[w.ID] = w.Name
		if w.State == "pending" {
			pendingTruth++
		}
	}
	for _, w := range truth.Tasks {
		g, ok := got[w.ID]
		if !ok && w.State != "pending" && in.AtLeast(3, 14) {
			continue // 3.14+ unlinks a task from its thread's list when it finishes
		}
		if !ok {
			t.Errorf("task %s %q (%s) missing", w.ID, w.Name, w.State)
			continue
		}
		if g.Error != "" {
			t.Errorf("task %s %q: error %q", w.ID, w.Name, g.Error)
		}
		if g.Name != w.Name || g.State != w.State || g.Loop != w.Loop || g.Exception != w.Exception || g.Running != w.Running {
			t.Errorf("task %s: got name %q state %s loop %s exception %q running %v, want %q %s %s %q %v", w.ID, g.Name, g.State, g.Loop, g.Exception, g.Running, w.Name, w.State, w.Loop, w.Exception, w.Running)
		}
		// The thread running the loop (the fixture knows it from 3.8;
		// pyglass finds it where the C module keeps it, not in a
		// pure-Python asyncio's threading.local).
		if w.Thread != 0 && !pure && g.Thread != w.Thread {
			t.Errorf("task %s %q: thread %d, want %d", w.ID, w.Name, g.Thread, w.Thread)
		}
		if len(g.Stack) != len(w.Stack) {
			t.Errorf("task %s %q: %d coroutines, want %d\n got: %s\nwant: %s", w.ID, w.Name, len(g.Stack), len(w.Stack), fmtFrames(g.Stack), fmtFrames(w.Stack))
		} else {
			for i, wf := range w.Stack {
				if gf := g.Stack[i]; gf.File != wf.File || gf.Line != wf.Line || gf.Function != wf.Function {
					t.Errorf("task %s %q coroutine %d: got %s:%d %s, want %s:%d %s", w.ID, w.Name, i, gf.File, gf.Line, gf.Function, wf.File, wf.Line, wf.Function)
				}
			}
		}
		gotAwaits := append([]string(nil), g.Awaits.Tasks...)
		wantAwaits := append([]string(nil), w.Awaits...)
		sort.Strings(gotAwaits)
		sort.Strings(wantAwaits)
		if strings.Join(gotAwaits, ",") != strings.Join(wantAwaits, ",") {
			t.Errorf("task %s %q awaits %v, want %v", w.ID, w.Name, gotAwaits, wantAwaits)
		}
		// A sleep's deadline is its TimerHandle's, and due_in the time
		// left from the snapshot, which came after the truth.
		switch {
		case w.SleepWhen == nil && g.Awaits.Deadline != 0:
			t.Errorf("task %s %q: pyglass says it sleeps until %v, the target says it does not sleep", w.ID, w.Name, g.Awaits.Deadline)
		case w.SleepWhen == nil:
		case g.Awaits.Kind != "sleep" || g.Awaits.Deadline != *w.SleepWhen || g.Awaits.DueIn == nil:
			t.Errorf("task %s %q: awaits %q until %v (due in %v), want sleep until %v", w.ID, w.Name, g.Awaits.Kind, g.Awaits.Deadline, g.Awaits.DueIn, *w.SleepWhen)
		default:
			left := *w.SleepWhen - truth.Monotonic // at the truth
			if due := *g.Awaits.DueIn; due > left+0.001 || due < left-since-0.001 {
				t.Errorf("task %s %q: due in %.3fs; %.3fs were left at the truth, at most %.3fs before", w.ID, w.Name, due, left, since)
			}
		}
		for _, a := range w.Awaits {
			if !contains(got[a].AwaitedBy, w.ID) {
				t.Errorf("task %s %q: not in the awaited_by %v of %s %q", w.ID, w.Name, got[a].AwaitedBy, a, names[a])
			}
		}
	}
	// Every pending task pyglass lists is one the target knows.
	pending = 0
	for _, g := range d.Tasks {
		if g.State == "pending" {
			pending++
			if _, ok := names[g.ID]; !ok {
				t.Errorf("pending task %s %q is not one of the target's", g.ID, g.Name)
			}
		}
	}
	if pending != pendingTruth || pending < many {
		t.Errorf("%d pending tasks, want %d", pending, pendingTruth)
	}
	// The await cycle, with both its members.
	if len(d.Cycles) != 1 || len(d.Cycles[0]) != 2 {
		t.Fatalf("cycles %v, want one of two tasks", d.Cycles)
	}
	c := d.Cycles[0]
	if !(got[c[0]].Awaits.Kind == "task" && got[c[0]].Awaits.Tasks[0] == c[1] && got[c[1]].Awaits.Tasks[0] == c[0]) {
		t.Errorf("cycle %v: its members do not await each other", c)
	}
	// Kinds of what the primitives' waiters await.
	kinds := map[string]string{"lock-waiter": "lock", "gather-outer": "gather", "gather-leaf": "sleep", "queue-getter": "queue",
		"socket-reader": "socket", "stream-reader": "socket", "event-waiter": "event", "condition-waiter": "event"}
	if in.AtLeast(3, 11) {
		kinds["taskgroup"] = "taskgroup"
		// Before 3.11 a frame names its function, not its class:
		// Condition.wait and Event.wait are both "wait" in locks.py.
		kinds["condition-waiter"] = "condition"
	}
	if in.AtLeast(3, 8) {
		for _, g := range d.Tasks {
			if k, ok := kinds[g.Name]; ok && g.Awaits.Kind != k {
				t.Errorf("task %q awaits %q, want %q", g.Name, g.Awaits.Kind, k)
			}
		}
	}

	return pending, c
}

// TestTasksPurePython: the same target without asyncio's C module, whose
// tasks and futures are Python objects read through their dicts.
func TestTasksPurePython(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 7) {
			testenv.Skipf(t, "pyglass reads tasks of 3.7 and newer, not %s", in.Version())
		}
		started := time.Now()
		tg := testenv.Start(t, in, testenv.Fixture(t, "asyncio_tasks.py"), testenv.Args("many=10", "pure"))
		checkTruth(t, in, tg, started, 10, true)
		healthy(t, tg)
	})
}

// TestTasksNoAsyncio: a program that never imported asyncio has no task.
func TestTasksNoAsyncio(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 7) {
			testenv.Skipf(t, "pyglass reads tasks of 3.7 and newer, not %s", in.Version())
		}
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
		r := run(t, nil, "tasks", "--json", strconv.Itoa(tg.PID))
		want(t, r, 0)
		var d pyglass.TaskDump
		if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil || len(d.Tasks) != 0 || d.PID != tg.PID {
			t.Fatalf("want no task: %v %s", err, clip(r.Stdout))
		}
		healthy(t, tg)
	})
}

// TestTasksAgreesWithAsyncioPS compares, on 3.14+, pyglass tasks with
// what the interpreter's own `python -m asyncio ps PID` and `pstree PID`
// report on the same target: the same tasks by id and name, the same
// coroutine stacks, every awaiter edge, and the await cycle.
func TestTasksAgreesWithAsyncioPS(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 14) {
			testenv.Skipf(t, "python -m asyncio ps exists from 3.14, not in %s", in.Version())
		}
		if _, err := exec.LookPath("nsenter"); err != nil {
			testenv.Skipf(t, "nsenter (to run python -m asyncio ps where the target runs) is missing: %v", err)
		}
		tg := testenv.Start(t, in, testenv.Fixture(t, "asyncio_tasks.py"))
		pid := strconv.Itoa(tg.PID)
		asyncio := func(cmd string) string {
			args := []string{"--target", pid, "--mount", "--root", in.Path, "-m", "asyncio", cmd, strconv.Itoa(tg.NSPID)}
			if in.Chroot == "" {
				args = []string{"-m", "asyncio", cmd, pid}
				out, _ := exec.Command(in.Path, args...).CombinedOutput()
				return string(out)
			}
			out, _ := exec.Command("nsenter", args...).CombinedOutput()
			return string(out)
		}
		ps, pstree := asyncio("ps"), asyncio("pstree")
		r := run(t, nil, "tasks", "--json", pid)
		want(t, r, 0)
		var d pyglass.TaskDump
		if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
			t.Fatal(err)
		}
		got := map[string]pyglass.AsyncTask{}
		for _, task := range d.Tasks {
			got[task.ID] = task
		}
		// ps: "tid  task-id  name  stack (innermost first, ' -> ')
		// [awaiter chain  awaiter-name]  awaiter-id", one line per
		// task and awaiter.
		seen := map[string]bool{}
		rows := 0
		for _, line := range strings.Split(ps, "\n") {
			f := strings.Fields(line)
			if len(f) < 4 || !strings.HasPrefix(f[1], "0x") {
				continue
			}
			rows++
			id, name, awaiter := f[1], f[2], f[len(f)-1]
			g, ok := got[id]
			if !ok {
				t.Errorf("asyncio ps lists task %s %q, pyglass does not", id, name)
				continue
			}
			seen[id] = true
			if g.Name != name || strconv.Itoa(g.Thread) != f[0] {
				t.Errorf("task %s: pyglass says %q on thread %d, asyncio ps %q on %s", id, g.Name, g.Thread, name, f[0])
			}
			var stack []string
			for i := len(g.Stack) - 1; i >= 0; i-- {
				stack = append(stack, g.Stack[i].Function)
			}
			middle := strings.Join(f[3:len(f)-1], " ")
			if !strings.HasPrefix(middle, strings.Join(stack, " -> ")) {
				t.Errorf("task %s %q: pyglass's stack %v is not the one asyncio ps shows: %q", id, name, stack, middle)
			}
			if awaiter != "0x0" && !contains(got[awaiter].Awaits.Tasks, id) {
				t.Errorf("asyncio ps: %s %q is awaited by %s; pyglass: %s awaits %v", id, name, awaiter, awaiter, got[awaiter].Awaits.Tasks)
			}
		}
		// 3.14's ps misses the tasks of threads other than the
		// first one it reads (3.15's lists them all): pyglass's other
		// tasks must all be on threads ps shows no task of.
		psThreads := map[int]bool{}
		for id := range seen {
			psThreads[got[id].Thread] = true
		}
		for _, g := range d.Tasks {
			if !seen[g.ID] && (psThreads[g.Thread] || in.AtLeast(3, 15)) {
				t.Errorf("pyglass lists task %s %q on thread %d, asyncio ps does not", g.ID, g.Name, g.Thread)
			}
		}
		if rows == 0 || len(psThreads) == 0 {
			t.Errorf("asyncio ps lists no task:\n%s", clip(ps))
		}
		// pstree refuses a graph with cycles and names the cycle.
		if len(d.Cycles) != 1 {
			t.Fatalf("pyglass cycles %v", d.Cycles)
		}
		var names []string
		for _, id := range d.Cycles[0] {
			names = append(names, got[id].Name)
		}
		sort.Strings(names)
		if !strings.Contains(pstree, "cycle: ") || !strings.Contains(pstree, names[0]) || !strings.Contains(pstree, names[1]) {
			t.Errorf("pyglass's cycle %v is not asyncio pstree's:\n%s", names, clip(pstree))
		}
		healthy(t, tg)
	})
}

// TestStacksAsync: `stacks --async` adds the tasks to the stacks, each
// (3.14+) under a thread of the dump that runs its loop.
func TestStacksAsync(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 7) {
			testenv.Skipf(t, "pyglass reads tasks of 3.7 and newer, not %s", in.Version())
		}
		tg := testenv.Start(t, in, testenv.Fixture(t, "asyncio_tasks.py"))
		pid := strconv.Itoa(tg.PID)
		r := run(t, nil, "stacks", "--async", "--json", pid)
		want(t, r, 0)
		var d struct {
			pyglass.StackDump
			Tasks  []pyglass.AsyncTask `json:"tasks"`
			Cycles [][]string          `json:"cycles"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
			t.Fatal(err)
		}
		plain := run(t, nil, "tasks", "--json", pid)
		want(t, plain, 0)
		var alone pyglass.TaskDump
		if err := json.Unmarshal([]byte(plain.Stdout), &alone); err != nil {
			t.Fatal(err)
		}
		if len(d.Threads) != 3 || len(d.Tasks) != len(alone.Tasks) || len(d.Tasks) < 18 || len(d.Cycles) != 1 {
			t.Fatalf("%d threads, %d tasks (pyglass tasks: %d), cycles %v: %s", len(d.Threads), len(d.Tasks), len(alone.Tasks), d.Cycles, clip(r.Stdout))
		}
		tids := map[int]bool{}
		for _, th := range d.Threads {
			tids[th.TID] = true
		}
		loops := map[string]int{}
		for _, task := range d.Tasks {
			if in.AtLeast(3, 8) && !tids[task.Thread] {
				t.Errorf("task %q on thread %d, not one of the dump's", task.Name, task.Thread)
			}
			if prev, ok := loops[task.Loop]; ok && prev != task.Thread {
				t.Errorf("loop %s on threads %d and %d", task.Loop, prev, task.Thread)
			}
			loops[task.Loop] = task.Thread
		}
		text := run(t, nil, "stacks", "--async", pid)
		want(t, text, 0)
		if !strings.Contains(text.Stdout, "asyncio tasks of loop") || !strings.Contains(text.Stdout, "loop2-gather") && in.AtLeast(3, 8) {
			t.Errorf("no task section:\n%s", clip(text.Stdout))
		}
		healthy(t, tg)
	})
}

// TestTasksCore: `pyglass tasks --core` on a core that `pyglass dump`
// wrote of the fixture gives exactly what `pyglass tasks` gives on the
// live target (which TestTasksMatchTruth checks against the target's own
// view), but for the time left of each sleep, which a core cannot tell.
func TestTasksCore(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 7) {
			testenv.Skipf(t, "pyglass reads tasks of 3.7 and newer, not %s", in.Version())
		}
		tg := testenv.Start(t, in, testenv.Fixture(t, "asyncio_tasks.py"), testenv.Args("many=50"))
		pid := strconv.Itoa(tg.PID)
		path := filepath.Join(t.TempDir(), "core")
		want(t, run(t, nil, "dump", pid, "-o", path), 0)
		live := run(t, nil, "tasks", "--json", "--all", pid)
		want(t, live, 0)
		fromCore := run(t, nil, "tasks", "--json", "--all", "--core", path)
		want(t, fromCore, 0)
		var l, c pyglass.TaskDump
		if err := json.Unmarshal([]byte(live.Stdout), &l); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(fromCore.Stdout), &c); err != nil {
			t.Fatal(err)
		}
		// A core names the files as this machine sees them (a chroot's
		// interpreter by its host path).
		if strings.HasSuffix(c.Python.Path, l.Python.Path) {
			c.Python.Path = l.Python.Path
		}
		sleeps := 0
		for i := range l.Tasks {
			if l.Tasks[i].Awaits.DueIn != nil {
				sleeps++
			}
			l.Tasks[i].Awaits.DueIn = nil
		}
		lb, _ := json.Marshal(l)
		cb, _ := json.Marshal(c)
		if string(lb) != string(cb) || len(c.Tasks) < 50 || sleeps < 50 {
			t.Errorf("tasks --core differs from the live tasks (or %d tasks, %d sleeps):\n core: %s\n live: %s", len(c.Tasks), sleeps, clip(string(cb)), clip(string(lb)))
		}
		healthy(t, tg)
	})
}
