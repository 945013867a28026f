package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/testenv"
)

// truthFrame is one frame as the fixture saw it (traceback.extract_stack,
// plus f_code.co_qualname where the version has one).
type truthFrame struct {
	File     string  `json:"file"`
	Line     int     `json:"line"`
	Name     string  `json:"name"`
	Qualname *string `json:"qualname"`
}

type truthThread struct {
	Name     string       `json:"name"`
	Ident    uint64       `json:"ident"`
	NativeID *int         `json:"native_id"`
	Main     bool         `json:"main"`
	Frames   []truthFrame `json:"frames"`
}

// truth is the "STACKS <json>" line of testdata/stacks_zoo.py.
type truth struct {
	Threads  []truthThread     `json:"threads"`
	Expected []string          `json:"expected"`
	LocalsFn string            `json:"locals_function"`
	Locals   map[string]string `json:"locals"`
}

// stacksJSON runs `pyglass stacks --json PID [extra...]`, wants exit 0 and
// decodes the dump.
func stacksJSON(t testing.TB, pid int, extra ...string) *pyglass.StackDump {
	t.Helper()
	args := append([]string{"stacks", "--json"}, extra...)
	r := run(t, nil, append(args, strconv.Itoa(pid))...)
	want(t, r, 0)
	if r.Stderr != "" {
		t.Fatalf("stacks wrote to stderr: %s", r)
	}
	var d pyglass.StackDump
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decoding stacks JSON: %v\n%s", err, clip(r.Stdout))
	}
	// The raw shape: every documented key is there.
	var raw struct {
		PID     *int `json:"pid"`
		Python  *struct{ Version, Path *string }
		Threads []map[string]json.RawMessage `json:"threads"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.PID == nil || *raw.PID != pid || raw.Python == nil || raw.Python.Version == nil || raw.Python.Path == nil {
		t.Fatalf("pid/python keys missing or wrong: %s", clip(r.Stdout))
	}
	for _, th := range raw.Threads {
		for _, k := range []string{"tid", "name", "main", "holds_gil", "state", "frames"} {
			if _, ok := th[k]; !ok {
				t.Fatalf("thread without %q: %s", k, clip(r.Stdout))
			}
		}
	}
	return &d
}

func threadByName(d *pyglass.StackDump, name string) (*pyglass.ThreadStack, int) {
	var found *pyglass.ThreadStack
	n := 0
	for i := range d.Threads {
		if d.Threads[i].Name == name {
			found = &d.Threads[i]
			n++
		}
	}
	return found, n
}

// expectFunction is what pyglass must print for a frame: the qualified
// name where the code object keeps one (3.11+), else co_name.
func expectFunction(f truthFrame) string {
	if f.Qualname != nil {
		return *f.Qualname
	}
	return f.Name
}

// compareThread fails unless pyglass's frames equal the ground truth.
func compareThread(t testing.TB, want truthThread, got *pyglass.ThreadStack) {
	t.Helper()
	if got.Error != "" {
		t.Errorf("thread %q: error %q", want.Name, got.Error)
	}
	if got.Main != want.Main {
		t.Errorf("thread %q: main=%v, want %v", want.Name, got.Main, want.Main)
	}
	if want.NativeID != nil && got.TID != *want.NativeID {
		t.Errorf("thread %q: tid %d, want %d", want.Name, got.TID, *want.NativeID)
	}
	if len(got.Frames) != len(want.Frames) {
		t.Errorf("thread %q: %d frames, want %d\n got: %s\nwant: %s", want.Name, len(got.Frames), len(want.Frames),
			fmtFrames(got.Frames), fmtTruth(want.Frames))
		return
	}
	for i, w := range want.Frames {
		g := got.Frames[i]
		if g.File != w.File || g.Line != w.Line || g.Function != expectFunction(w) {
			t.Errorf("thread %q frame %d: got %s:%d %s, want %s:%d %s", want.Name, i, g.File, g.Line, g.Function, w.File, w.Line, expectFunction(w))
		}
	}
}

func fmtFrames(fs []pyglass.Frame) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 12 && i < len(fs)-4 {
			continue
		}
		fmt.Fprintf(&b, "\n  %s:%d %s", f.File, f.Line, f.Function)
	}
	return b.String()
}

func fmtTruth(fs []truthFrame) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 12 && i < len(fs)-4 {
			continue
		}
		fmt.Fprintf(&b, "\n  %s:%d %s", f.File, f.Line, expectFunction(f))
	}
	return b.String()
}

// TestStacksGroundTruth: on every interpreter, every frame of every thread
// of stacks_zoo.py (locks, events, sleep in a generator, a deadlock, a
// 500-deep recursion, methods, nested functions, a lambda, a decorator, a
// comprehension, a class body, asyncio coroutines, non-ASCII names and
// paths) is what the program itself sees, in both modes; --locals shows
// known locals exactly.
func TestStacksGroundTruth(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_zoo.py"))
		var gt truth
		line := ""
		for _, l := range tg.Stdout() {
			if strings.HasPrefix(l, "STACKS ") {
				line = l
			}
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "STACKS ")), &gt); err != nil {
			t.Fatalf("fixture ground truth: %v (%q)", err, clip(line))
		}
		if len(gt.Threads) != len(gt.Expected) {
			t.Fatalf("fixture saw %d threads, expected %d", len(gt.Threads), len(gt.Expected))
		}

		for _, mode := range [][]string{nil, {"--nonblocking"}, {"--locals"}} {
			d := stacksJSON(t, tg.PID, mode...)
			if d.PID != tg.PID || !strings.HasPrefix(d.Python.Version, in.Version()+".") || d.Python.Path == "" {
				t.Fatalf("%v: pid %d python %+v, want pid %d version %s.x", mode, d.PID, d.Python, tg.PID, in.Version())
			}
			// Every thread but the fixture's reporter (which may still be
			// exiting) is one of the ground truth's.
			names := map[string]bool{}
			for _, th := range gt.Threads {
				names[th.Name] = true
			}
			mains := 0
			for _, th := range d.Threads {
				if th.Main {
					mains++
				}
				if !names[th.Name] && th.Name != "reporter" {
					t.Errorf("%v: unexpected thread %q (tid %d)", mode, th.Name, th.TID)
				}
			}
			if mains != 1 || !d.Threads[0].Main {
				t.Errorf("%v: %d main threads (want 1, listed first)", mode, mains)
			}
			for _, want := range gt.Threads {
				got, n := threadByName(d, want.Name)
				if n != 1 {
					t.Errorf("%v: thread %q listed %d times", mode, want.Name, n)
					continue
				}
				compareThread(t, want, got)
				if want.Name == "deep" && len(got.Frames) < 500 {
					t.Errorf("deep recursion: %d frames", len(got.Frames))
				}
			}
			if len(mode) == 1 && mode[0] == "--locals" {
				checkLocals(t, d, gt)
			}
			if t.Failed() {
				t.FailNow()
			}
		}

		nframes := 0
		for _, th := range gt.Threads {
			nframes += len(th.Frames)
		}
		t.Logf("%d threads, %d frames match the ground truth", len(gt.Threads), nframes)

		// The text form shows the same frames, Python-traceback style.
		r := run(t, nil, "stacks", strconv.Itoa(tg.PID))
		want(t, r, 0)
		for _, th := range gt.Threads {
			if !strings.Contains(r.Stdout, strconv.Quote(th.Name)) && !strings.Contains(r.Stdout, `"`+th.Name+`"`) {
				t.Errorf("text output lacks thread %q", th.Name)
			}
			f := th.Frames[len(th.Frames)-1]
			if s := fmt.Sprintf("File \"%s\", line %d, in %s\n", f.File, f.Line, expectFunction(f)); !strings.Contains(r.Stdout, s) {
				t.Errorf("text output lacks %q", s)
			}
		}
		healthy(t, tg)
	})
}

func checkLocals(t *testing.T, d *pyglass.StackDump, gt truth) {
	t.Helper()
	th, _ := threadByName(d, "locals")
	if th == nil {
		t.Fatal("no thread \"locals\"")
	}
	var fr *pyglass.Frame
	for i := range th.Frames {
		if strings.HasSuffix(th.Frames[i].Function, gt.LocalsFn) {
			fr = &th.Frames[i]
		}
	}
	if fr == nil {
		t.Fatalf("no frame %s in %s", gt.LocalsFn, fmtFrames(th.Frames))
	}
	for k, v := range gt.Locals {
		if fr.Locals[k] != v {
			t.Errorf("local %s = %q, want %q (all: %q)", k, fr.Locals[k], v, fr.Locals)
		}
	}
	// Containers: the type name and the length.
	for k, typ := range map[string][2]string{"a_list": {"list", "3"}, "a_dict": {"dict", "2"}, "a_tuple": {"tuple", "2"}} {
		v := fr.Locals[k]
		if !strings.Contains(v, typ[0]) || !strings.Contains(v, typ[1]) {
			t.Errorf("local %s = %q, want the type %s and the length %s", k, v, typ[0], typ[1])
		}
	}
}

// TestStacksGILSpinner: a thread spinning in sum(range(...)) holds the GIL;
// stacks says so and shows its Python frames.
func TestStacksGILSpinner(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_spin.py"))
		var gt truthThread
		l := tg.Stdout()
		for _, s := range l {
			if j, ok := strings.CutPrefix(s, "SPIN "); ok {
				if err := json.Unmarshal([]byte(j), &gt); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(gt.Frames) == 0 {
			t.Fatalf("no SPIN line from the fixture: %q", l)
		}
		// The spinner prints SPIN just before its C call: it is in the
		// call once it has run 50 ms on a CPU since, out of any system
		// call.
		spinner := 0
		for _, tid := range testenv.Tasks(tg.PID) {
			if tid != tg.PID {
				spinner = tid
			}
		}
		since := testenv.CPUTime(tg.PID, spinner)
		testenv.WaitUntil(t, 30*time.Second, "the spinner runs its C call", func() bool {
			return testenv.BlockedIn(tg.PID, spinner) < 0 && testenv.CPUTime(tg.PID, spinner)-since > 50*time.Millisecond
		})
		for _, mode := range [][]string{nil, {"--nonblocking"}} {
			d := stacksJSON(t, tg.PID, mode...)
			got, n := threadByName(d, "spinner")
			if n != 1 {
				t.Fatalf("%v: spinner listed %d times", mode, n)
			}
			if !got.HoldsGIL {
				t.Errorf("%v: spinner does not hold the GIL: %+v", mode, got)
			}
			for _, th := range d.Threads {
				if th.HoldsGIL && th.Name != "spinner" {
					t.Errorf("%v: %q holds the GIL too", mode, th.Name)
				}
			}
			compareThread(t, gt, got)
		}
		healthy(t, tg)
	})
}

// TestStacksManyThreads: 200 threads are all listed, each with its name
// and its frames.
func TestStacksManyThreads(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("threads=200", "interval=0.2"))
		// Wait until every worker sleeps (in a system call, not waiting
		// for the GIL as it starts).
		testenv.WaitUntil(t, 30*time.Second, "the 200 workers all sleep", func() bool { return testenv.AllAsleep(tg.PID, 201) })
		d := stacksJSON(t, tg.PID)
		if len(d.Threads) != 201 {
			t.Fatalf("%d threads listed, want 201", len(d.Threads))
		}
		seen := map[string]int{}
		tids := map[int]bool{}
		for _, th := range d.Threads {
			seen[th.Name]++
			tids[th.TID] = true
			if th.Error != "" {
				t.Errorf("thread %q: %s", th.Name, th.Error)
			}
			if th.Name == "MainThread" {
				continue
			}
			if n := len(th.Frames); n == 0 || th.Frames[n-1].Function != "worker_wait" || th.Frames[n-1].File != tg.Script {
				t.Errorf("thread %q: frames %s", th.Name, fmtFrames(th.Frames))
			}
		}
		for i := 1; i <= 200; i++ {
			if n := seen[fmt.Sprintf("worker-%d", i)]; n != 1 {
				t.Errorf("worker-%d listed %d times", i, n)
			}
		}
		if seen["MainThread"] != 1 || !d.Threads[0].Main || d.Threads[0].TID != tg.PID {
			t.Errorf("main thread: %+v", d.Threads[0])
		}
		if len(tids) != 201 {
			t.Errorf("%d distinct tids", len(tids))
		}
		healthy(t, tg)
		noTraces(t, tg)
	})
}

// TestStacksThousandDumps: 1,000 dumps (through the Go API, in this
// process) leave targets blocked in sleep, select, accept and recv running
// normally: no interrupted system call, no stopped or traced thread.
func TestStacksThousandDumps(t *testing.T) {
	var ins []testenv.Interp
	for _, l := range []string{"2.7", "3.13", "3.14-chroot"} {
		if in, ok := testenv.Lookup(l); ok {
			ins = append(ins, in)
		}
	}
	if all := testenv.Interpreters(); len(ins) == 0 && len(all) > 0 {
		ins = append(ins, all[len(all)-1])
	}
	if len(ins) == 0 {
		t.Skip("no Python interpreter on this machine")
	}
	for _, in := range ins {
		t.Run(in.Label, func(t *testing.T) {
			lockThread(t)
			var tgs []*testenv.Target
			for _, mode := range []string{"sleep", "select", "accept", "recv"} {
				tgs = append(tgs, testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args(mode, "interval=0.05", "threads=2")))
			}
			procs := make([]*pyglass.Process, len(tgs))
			for i, tg := range tgs {
				p, err := pyglass.Attach(tg.PID)
				if err != nil {
					t.Fatal(err)
				}
				procs[i] = p
			}
			t0 := time.Now()
			for n := 0; n < 1000; n++ {
				i := n % len(procs)
				d, err := procs[i].Stacks(context.Background(), pyglass.StackOptions{})
				if err != nil {
					t.Fatalf("dump %d of %d: %v", n, tgs[i].PID, err)
				}
				if len(d.Threads) != 3 {
					t.Fatalf("dump %d of %d: %d threads", n, tgs[i].PID, len(d.Threads))
				}
			}
			took := time.Since(t0)
			t.Logf("1000 dumps in %v", took)
			// A few through the binary, with locals; then the targets
			// must be released and tick on.
			for _, tg := range tgs {
				stacksJSON(t, tg.PID, "--locals")
			}
			for _, tg := range tgs {
				healthy(t, tg)
				noTraces(t, tg)
				tg.WaitLine("TICK", 5*time.Second)
			}
		})
	}
}

// TestStacksStoppedTarget: with the whole target stopped (SIGSTOP), stacks
// works in both modes and the target stays stopped; --nonblocking does not
// trace it (it works while another tracer holds it).
func TestStacksStoppedTarget(t *testing.T) {
	forLabels(t, []string{"2.7", "3.12"}, func(t *testing.T, in testenv.Interp) {
		lockThread(t) // traceFromHere ends a locked thread
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("select", "interval=0.1", "threads=2"))
		syscall.Kill(tg.PID, syscall.SIGSTOP)
		waitAllStopped(t, tg.PID)
		for _, mode := range [][]string{nil, {"--nonblocking"}} {
			d := stacksJSON(t, tg.PID, mode...)
			if len(d.Threads) != 3 {
				t.Fatalf("%v: %d threads", mode, len(d.Threads))
			}
			for _, th := range d.Threads {
				if th.State != "stopped" || len(th.Frames) == 0 {
					t.Errorf("%v: thread %q state %q frames %d", mode, th.Name, th.State, len(th.Frames))
				}
			}
			for _, tid := range tasks(tg.PID) {
				if s := taskState(tg.PID, tid); s != 'T' {
					t.Fatalf("%v: thread %d state %c after stacks, want T", mode, tid, s)
				}
			}
		}
		syscall.Kill(tg.PID, syscall.SIGCONT)
		tg.WaitLine("TICK", 5*time.Second)
		healthy(t, tg)
		noTraces(t, tg)

		// Already traced by someone else: the blocking mode refuses
		// (exit 4), --nonblocking reads without ptrace.
		release := traceFromHere(t, tg.PID)
		r := run(t, nil, "stacks", strconv.Itoa(tg.PID))
		want(t, r, 4)
		oneLineErr(t, r, "trace")
		d := stacksJSON(t, tg.PID, "--nonblocking")
		if len(d.Threads) != 3 {
			t.Errorf("--nonblocking while traced: %d threads", len(d.Threads))
		}
		release()
		testenv.WaitUntil(t, 10*time.Second, "the other tracer has let go", func() bool { return tg.Healthy() == nil })
		healthy(t, tg)
		noTraces(t, tg)
	})
}

func tasks(pid int) []int { return testenv.Tasks(pid) }

func taskState(pid, tid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

func waitAllStopped(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		all := true
		for _, tid := range tasks(pid) {
			if taskState(pid, tid) != 'T' {
				all = false
			}
		}
		if all {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never stopped", pid)
}

// TestStacksBadInput: each bad input gives a one-line error and its exit
// code; the good path exits 0 with no thread error.
func TestStacksBadInput(t *testing.T) {
	in := anyInterp(t, "3.12")
	py := in.HostPath()

	t.Run("good", func(t *testing.T) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("threads=1"))
		d := stacksJSON(t, tg.PID)
		for _, th := range d.Threads {
			if th.Error != "" {
				t.Errorf("thread %d: %s", th.TID, th.Error)
			}
		}
		r := run(t, nil, "stacks", strconv.Itoa(tg.PID))
		want(t, r, 0)
		healthy(t, tg)
	})
	t.Run("no-such-pid", func(t *testing.T) {
		r := run(t, nil, "stacks", "999999999")
		want(t, r, 3)
		oneLineErr(t, r, "no such process")
	})
	t.Run("usage", func(t *testing.T) {
		r := run(t, nil, "stacks")
		want(t, r, 2)
		r = run(t, nil, "stacks", "abc")
		want(t, r, 2)
		oneLineErr(t, r, "not a process ID")
	})
	t.Run("bash", func(t *testing.T) {
		cmd := exec.Command("bash", "-c", "sleep 30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		// Start returns once bash runs (exec done): nothing to wait for.
		r := run(t, nil, "stacks", strconv.Itoa(cmd.Process.Pid))
		want(t, r, 3)
		oneLineErr(t, r, "not a Python process")
	})
	t.Run("zombie", func(t *testing.T) {
		if in.Chroot != "" {
			testenv.Skipf(t, "needs a host interpreter")
		}
		// A Python child that exits under a parent that never reaps it.
		cmd := exec.Command("sh", "-c", `"$0" -c 'pass' & exec sleep 30`, py)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		zpid := 0
		for i := 0; i < 500 && zpid == 0; i++ {
			time.Sleep(10 * time.Millisecond)
			kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
			for _, k := range strings.Fields(string(kids)) {
				if n, _ := strconv.Atoi(k); state(n) == 'Z' {
					zpid = n
				}
			}
		}
		if zpid == 0 {
			t.Fatal("could not make a zombie")
		}
		r := run(t, nil, "stacks", strconv.Itoa(zpid))
		want(t, r, 3)
		oneLineErr(t, r, "zombie")
	})
	t.Run("permission-denied", func(t *testing.T) {
		if os.Geteuid() != 0 {
			testenv.Skipf(t, "needs root")
		}
		u, err := user.Lookup("nobody")
		if err != nil {
			testenv.Skipf(t, "no user nobody: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
		for _, mode := range [][]string{nil, {"--nonblocking"}} {
			r := runAs(t, uid, gid, append(append([]string{"stacks"}, mode...), strconv.Itoa(tg.PID))...)
			want(t, r, 4)
			oneLineErr(t, r, "permission denied")
			if r.Stdout != "" {
				t.Errorf("stdout on error: %q", r.Stdout)
			}
		}
		healthy(t, tg)
		noTraces(t, tg)
	})
}

// TestStacksTargetExits: a target that exits while pyglass reads it gives
// a one-line error and exit 3 (or a full dump, exit 0); the target exits
// as it meant to, not by a signal pyglass caused.
func TestStacksTargetExits(t *testing.T) {
	lockThread(t)
	in := anyInterp(t, "3.12")
	script := testenv.Fixture(t, "stacks_exit.py")
	outcomes := map[int]int{}
	for round := 0; round < 3; round++ {
		tg := testenv.Start(t, in, script, testenv.Args("0.3"))
		pid := strconv.Itoa(tg.PID)
		// The binary until the target is gone.
		for i := 0; i < 400; i++ {
			if done, _ := tg.Exited(); done {
				break
			}
			r := run(t, nil, "stacks", "--json", pid)
			outcomes[r.Code]++
			switch r.Code {
			case 0:
				var d pyglass.StackDump
				if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
					t.Fatalf("exit 0 with bad JSON: %v\n%s", err, r)
				}
			case 3:
				oneLineErr(t, r, "")
				if l := strings.ToLower(r.Stderr); !strings.Contains(l, "exited") && !strings.Contains(l, "zombie") && !strings.Contains(l, "no such process") {
					t.Fatalf("exit 3 without saying the target exited: %s", r)
				}
				if r.Stdout != "" {
					t.Fatalf("stdout with exit 3: %s", r)
				}
			default:
				t.Fatalf("target exiting: %s", r)
			}
		}
		checkExit(t, tg, 7)
	}
	// The API in a tight loop hits the exit in the middle of reads. It runs
	// in a copy of this test binary: a library user is not the parent of
	// the process it inspects (a parent that also traces its child gets
	// the child's exit reported to its tracer thread first).
	for round := 0; round < 3; round++ {
		tg := testenv.Start(t, in, script, testenv.Args("0.2"))
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "PYGLASS_E2E_STACKS_LOOP="+strconv.Itoa(tg.PID))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("stacks in a loop while the target exits: %v\n%s", err, out)
		}
		t.Logf("round %d: %s", round, strings.TrimSpace(string(out)))
		checkExit(t, tg, 7)
	}
	t.Logf("outcomes (exit code: count; -1 API error): %v", outcomes)
}

// lockThread keeps the test's goroutine on its OS thread until the test
// ends. Targets started from it get SIGKILL (Pdeathsig) when the OS thread
// that forked them exits, and pyglass's in-process tracer ends its own
// locked thread after each use: without the lock, that thread could be the
// one that started the targets.
func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

func checkExit(t *testing.T, tg *testenv.Target, code int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if done, err := tg.Exited(); done {
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != code {
				t.Fatalf("target ended with %v, want exit %d", err, code)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("target %d did not exit (state %c)", tg.PID, state(tg.PID))
}

// TestStacksThreadChurn: threads that start and end all the time (a thread
// exiting cannot be paused) never make a dump fail; every thread listed is
// one of the program's, each spawner is there with its frames.
func TestStacksThreadChurn(t *testing.T) {
	lockThread(t)
	forLabels(t, []string{"2.7", "3.12"}, func(t *testing.T, in testenv.Interp) {
		label := in.Label
		tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_churn.py"))
		p, err := pyglass.Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		short, torn := 0, 0
		// A thread threading does not name (yet, or any more) is shown
		// with the kernel's name for it: the program's.
		kname := comm(tg.PID, tg.PID)
		for n := 0; n < 240; n++ {
			nonblocking := n%4 == 3
			d, err := p.Stacks(context.Background(), pyglass.StackOptions{NonBlocking: nonblocking})
			if err != nil {
				t.Fatalf("%s dump %d: %v", label, n, err)
			}
			spawners := 0
			for _, th := range d.Threads {
				switch {
				case strings.HasPrefix(th.Name, "spawner-"):
					spawners++
					inSpawner := false
					for _, f := range th.Frames {
						inSpawner = inSpawner || f.Function == "spawner" && f.File == tg.Script
					}
					if th.Error == "" && !inSpawner && !nonblocking {
						t.Errorf("%s dump %d: spawner %+v", label, n, th)
					}
				case strings.HasPrefix(th.Name, "short-"):
					short++
				case th.Name == "MainThread", th.Name == "", th.Name == kname:
				case nonblocking:
					// Read without pausing, a name may come from memory
					// the program freed meanwhile.
				default:
					t.Errorf("%s dump %d: unexpected thread %q", label, n, th.Name)
				}
			}
			// Without pausing, the program may change what is being
			// read: a dump must only not fail then. Paused, a thread can
			// be caught in the middle of resizing threading._active; the
			// names are then read again in a second short pause, so
			// paused dumps list the 4 spawners by name; one miss in 180
			// is tolerated.
			if spawners != 4 && !nonblocking {
				torn++
				t.Logf("%s dump %d: %d spawners", label, n, spawners)
				for _, th := range d.Threads {
					t.Logf("%+v", th)
				}
			}
		}
		if torn > 1 {
			t.Errorf("%s: %d of 180 paused dumps did not list the 4 spawners", label, torn)
		}
		t.Logf("%s: %d short-lived threads seen, %d torn dumps", label, short, torn)
		healthy(t, tg)
	})
}

// TestStacksOneThreadUnreadable: a thread whose frame pointer is garbage
// (the test has the target overwrite it) is listed with its error, the
// other threads are complete, and the exit status is 0; once the pointer
// is restored the target goes on unharmed.
func TestStacksOneThreadUnreadable(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		l, err := layout.For(in.Major, in.Minor)
		if err != nil {
			t.Fatal(err)
		}
		tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_broken.py"))
		var tstate uint64
		for _, line := range tg.Stdout() {
			if strings.HasPrefix(line, "VICTIM tstate=") {
				f := strings.Fields(line)
				tstate, err = strconv.ParseUint(strings.TrimPrefix(f[1], "tstate=0x"), 16, 64)
				if err != nil {
					t.Fatalf("%q: %v", line, err)
				}
			}
		}
		if tstate == 0 {
			t.Fatalf("no VICTIM line: %q", tg.Stdout())
		}
		peek := func(addr uint64) uint64 {
			t.Helper()
			tg.Send(fmt.Sprintf("peek %#x", addr))
			v, err := strconv.ParseUint(strings.TrimPrefix(tg.WaitLine("PEEK ", 10*time.Second), "PEEK 0x"), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		poke := func(addr, v uint64) uint64 {
			t.Helper()
			tg.Send(fmt.Sprintf("poke %#x %#x", addr, v))
			old, err := strconv.ParseUint(strings.TrimPrefix(tg.WaitLine("POKED ", 10*time.Second), "POKED 0x"), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			// The line comes while the main thread is still in out():
			// wait for it to be back in serve_commands, blocked reading.
			testenv.WaitUntil(t, 10*time.Second, "the main thread waiting for a command", func() bool {
				return testenv.Asleep(tg.PID, tg.PID)
			})
			return old
		}
		// The field holding the victim's top frame, as cpython.Threads
		// reads it: current_frame (3.13+), cframe->current_frame
		// (3.11, 3.12), frame (before).
		var field uint64
		switch {
		case l.TstateCurrentFrame >= 0:
			field = tstate + uint64(l.TstateCurrentFrame)
		case l.CFrameCurrentFrame >= 0:
			field = peek(tstate+uint64(l.TstateCframe)) + uint64(l.CFrameCurrentFrame)
		default:
			field = tstate + uint64(l.TstateFrame)
		}
		// The victim between recording its state and blocking: wait for
		// it to be in victim_blocked.
		inner := func(th *pyglass.ThreadStack) string {
			if th == nil || len(th.Frames) == 0 {
				return ""
			}
			return th.Frames[len(th.Frames)-1].Function
		}
		for try := 0; ; try++ {
			d := stacksJSON(t, tg.PID)
			v, _ := threadByName(d, "victim")
			if inner(v) == "victim_blocked" && v.Error == "" {
				break
			}
			if try == 50 {
				t.Fatalf("victim never blocked: %+v", v)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if peek(field) == 0 {
			t.Fatalf("victim's frame field at %#x is 0", field)
		}
		old := poke(field, 0x10)
		restored := false
		defer func() {
			if !restored {
				poke(field, old) // before the target is killed
			}
		}()
		check := func(d *pyglass.StackDump, mode string) {
			t.Helper()
			v, _ := threadByName(d, "victim")
			if v == nil || v.Error == "" || len(v.Frames) != 0 {
				t.Fatalf("%s: victim %+v: want an error and no frames", mode, v)
			}
			for name, fn := range map[string]string{"MainThread": "serve_commands", "sleeper": "sleeper_wait"} {
				th, _ := threadByName(d, name)
				if th == nil || th.Error != "" || inner(th) != fn || th.Frames[0].Function != "<module>" && name == "MainThread" {
					t.Fatalf("%s: thread %q %+v, want complete frames ending in %s", mode, name, th, fn)
				}
			}
			if len(d.Threads) != 3 {
				t.Fatalf("%s: %d threads, want 3", mode, len(d.Threads))
			}
		}
		d := stacksJSON(t, tg.PID)
		check(d, "paused")
		v, _ := threadByName(d, "victim")
		t.Logf("victim's error: %s", v.Error)
		check(stacksJSON(t, tg.PID, "--nonblocking"), "nonblocking")
		// The text shows the error under the thread's heading.
		r := run(t, nil, "stacks", strconv.Itoa(tg.PID))
		want(t, r, 0)
		lines := strings.Split(r.Stdout, "\n")
		found := false
		for i, line := range lines {
			if strings.HasPrefix(line, fmt.Sprintf("Thread %d \"victim\"", v.TID)) {
				found = i+1 < len(lines) && lines[i+1] == "  <unreadable: "+v.Error+">"
			}
		}
		if !found || !strings.Contains(r.Stdout, "in sleeper_wait") || !strings.Contains(r.Stdout, "in serve_commands") {
			t.Fatalf("text output without the victim's error line, or incomplete:\n%s", r.Stdout)
		}
		// Restored, the victim reads again and runs on.
		poke(field, old)
		restored = true
		d = stacksJSON(t, tg.PID)
		if v, _ := threadByName(d, "victim"); v == nil || v.Error != "" || inner(v) != "victim_blocked" {
			t.Fatalf("restored victim: %+v", v)
		}
		healthy(t, tg)
		tg.Send("release")
		tg.WaitLine("VICTIM DONE", 10*time.Second)
		healthy(t, tg)
		noTraces(t, tg)
		tg.Send("quit")
		deadline := time.Now().Add(10 * time.Second)
		for done, err := tg.Exited(); !done || err != nil; done, err = tg.Exited() {
			if done || time.Now().After(deadline) {
				t.Fatalf("target after quit: exited %v (%v)", done, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
