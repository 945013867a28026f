package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// startLocks starts testdata/locks/deadlock.py's scenario and returns the
// target and its ground truth: the thread ids it wrote (t1, t2, ..., main).
func startLocks(t *testing.T, in testenv.Interp, scenario string) (*testenv.Target, map[string]int) {
	t.Helper()
	tg := testenv.Start(t, in, testenv.Fixture(t, "locks/deadlock.py"), testenv.Args(scenario))
	truth := map[string]int{}
	for _, l := range tg.Stdout() {
		if rest, ok := strings.CutPrefix(l, "READY "); ok {
			if err := json.Unmarshal([]byte(rest), &truth); err != nil {
				t.Fatalf("ground truth %q: %v", rest, err)
			}
		}
	}
	if len(truth) == 0 {
		t.Fatalf("no ground truth in %q", tg.Stdout())
	}
	return tg, truth
}

// locksJSON runs `pyglass locks --json PID`; the text form must run too
// and start with the same verdict.
func locksJSON(t *testing.T, pid int) *pyglass.LockReport {
	t.Helper()
	r := run(t, nil, "locks", "--json", strconv.Itoa(pid))
	want(t, r, 0)
	var rep pyglass.LockReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("locks --json: %v\n%s", err, r.Stdout)
	}
	txt := run(t, nil, "locks", strconv.Itoa(pid))
	want(t, txt, 0)
	if first, _, _ := strings.Cut(txt.Stdout, "\n"); rep.Verdict.Kind != pyglass.VerdictDeadlock && strings.HasPrefix(first, "deadlock:") {
		t.Errorf("text verdict %q, JSON %+v", first, rep.Verdict)
	}
	return &rep
}

func lockedThread(t *testing.T, rep *pyglass.LockReport, tid int) pyglass.LockThread {
	t.Helper()
	for _, th := range rep.Threads {
		if th.TID == tid {
			return th
		}
	}
	t.Fatalf("no thread %d in %+v", tid, rep.Threads)
	return pyglass.LockThread{}
}

// checkCycle checks a deadlock verdict whose one cycle is the threads
// named by keys, each waiting for a lock of type typ held by the next.
func checkCycle(t *testing.T, rep *pyglass.LockReport, truth map[string]int, typ string, inferred bool, keys ...string) {
	t.Helper()
	if rep.Verdict.Kind != pyglass.VerdictDeadlock || !strings.HasPrefix(rep.Verdict.Summary, "deadlock: "+strconv.Itoa(len(keys))+" threads") {
		t.Errorf("verdict %+v, want a deadlock of %d threads", rep.Verdict, len(keys))
	}
	var cyc []int
	lo := 0
	for i, k := range keys {
		cyc = append(cyc, truth[k])
		if truth[k] < truth[keys[lo]] {
			lo = i
		}
	}
	cyc = append(cyc[lo:], cyc[:lo]...)
	if len(rep.Cycles) != 1 || !slices.Equal(rep.Cycles[0], cyc) {
		t.Errorf("cycles %v, want [%v]", rep.Cycles, cyc)
	}
	for i, k := range keys {
		th := lockedThread(t, rep, truth[k])
		w := th.WaitsFor
		next := truth[keys[(i+1)%len(keys)]]
		if w.Kind != pyglass.WaitLock || w.Type != typ || w.HolderTID != next || w.HolderInferred != inferred || w.Object == "" {
			t.Errorf("thread %s (%d) waits for %+v, want a %s held by %d (inferred %v)", k, truth[k], w, typ, next, inferred)
		}
	}
	main := lockedThread(t, rep, truth["main"])
	if main.WaitsFor.HolderTID != 0 {
		t.Errorf("main thread %+v waits for no thread", main)
	}
}

// TestLocksDeadlocks: two RLocks taken in opposite orders, two Locks in
// with blocks, and three Locks in a ring: the verdict is deadlock, the
// cycle is the threads the target wrote, the RLock holders are read from
// the objects and the Lock holders inferred, and the target runs on.
func TestLocksDeadlocks(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		t.Run("rlocks", func(t *testing.T) {
			tg, truth := startLocks(t, in, "rlocks")
			rep := locksJSON(t, tg.PID)
			checkCycle(t, rep, truth, "RLock", false, "t1", "t2")
			if w := lockedThread(t, rep, truth["t1"]).WaitsFor; !strings.Contains(w.Where, "self._b in Cache.first") {
				t.Errorf("t1 waits at %q, want self._b in Cache.first", w.Where)
			}
			healthy(t, tg)
		})
		t.Run("locks", func(t *testing.T) {
			tg, truth := startLocks(t, in, "locks")
			rep := locksJSON(t, tg.PID)
			checkCycle(t, rep, truth, "Lock", true, "t1", "t2")
			if w := lockedThread(t, rep, truth["t2"]).WaitsFor; !strings.Contains(w.Where, "self._a in Cache.second") || !strings.Contains(w.Evidence, "with block") {
				t.Errorf("t2 waits for %+v, want self._a in Cache.second, held in a with block", w)
			}
			healthy(t, tg)
		})
		t.Run("three", func(t *testing.T) {
			tg, truth := startLocks(t, in, "three")
			checkCycle(t, locksJSON(t, tg.PID), truth, "Lock", true, "t1", "t2", "t3")
			healthy(t, tg)
		})
	})
}

// TestLocksNoDeadlock: a thread joining a thread that waits forever, a
// Condition wait, a Queue.get on an empty queue and a sleeping process:
// what each thread waits for is named, and the verdict never says
// deadlock.
func TestLocksNoDeadlock(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, c := range []struct {
			scenario, kind, verdict string
			holder                  string // the key of the thread t1 waits for
		}{
			{"join", pyglass.WaitJoin, pyglass.VerdictBlocked, "t2"},
			{"condition", pyglass.WaitCondition, pyglass.VerdictIdle, ""},
			{"queue", pyglass.WaitQueue, pyglass.VerdictIdle, ""},
			{"idle", pyglass.WaitSyscall, pyglass.VerdictIdle, ""},
			{"child", pyglass.WaitChild, pyglass.VerdictIdle, ""},
			{"socket", pyglass.WaitIO, pyglass.VerdictIdle, ""},
		} {
			t.Run(c.scenario, func(t *testing.T) {
				tg, truth := startLocks(t, in, c.scenario)
				rep := locksJSON(t, tg.PID)
				if rep.Verdict.Kind != c.verdict || len(rep.Cycles) != 0 || strings.HasPrefix(rep.Verdict.Summary, "deadlock:") {
					t.Errorf("verdict %+v, cycles %v; want %s and no cycle", rep.Verdict, rep.Cycles, c.verdict)
				}
				w := lockedThread(t, rep, truth["t1"]).WaitsFor
				holder := 0
				if c.holder != "" {
					holder = truth[c.holder]
				}
				if w.Kind != c.kind || w.HolderTID != holder {
					t.Errorf("t1 waits for %+v, want %s, holder %d", w, c.kind, holder)
				}
				if c.scenario == "child" {
					if obj := fmt.Sprint(truth["child"]); w.Object != obj || !strings.Contains(w.Evidence, "sleep 1000") {
						t.Errorf("t1 waits for %+v, want process %s (sleep 1000)", w, obj)
					}
				}
				if c.scenario == "socket" && (w.Type != "socket" || !strings.Contains(w.Evidence, fmt.Sprintf("-> 127.0.0.1:%d ESTABLISHED", truth["port"]))) {
					t.Errorf("t1 waits for %+v, want a socket connected to 127.0.0.1:%d", w, truth["port"])
				}
				if c.scenario == "queue" && !strings.Contains(w.Evidence, "empty queue (0 items)") {
					t.Errorf("t1 waits for %+v, want an empty queue (0 items)", w)
				}
				if c.scenario == "idle" && !strings.Contains(w.Evidence, "time.sleep") {
					t.Errorf("t1 waits for %+v, want time.sleep", w)
				}
				if c.scenario == "join" {
					if w2 := lockedThread(t, rep, truth["t2"]).WaitsFor; w2.Kind != pyglass.WaitEvent {
						t.Errorf("t2 waits for %+v, want an Event", w2)
					}
				}
				healthy(t, tg)
			})
		}
	})
}

// TestLocksGIL: a thread keeps the GIL in a C call (libc's sleep through
// ctypes.PyDLL) while another wants to run Python: the verdict names the
// holder, the waiter waits for the GIL held by it, and it is no deadlock.
func TestLocksGIL(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, truth := startLocks(t, in, "gil")
		var rep *pyglass.LockReport
		// The hog takes the GIL a moment after READY (the busy thread
		// may hold it until then, with the hog waiting for it).
		held := fmt.Sprintf("GIL held by thread %d ", truth["t1"])
		for try := 0; try < 50; try++ {
			if rep = locksJSON(t, tg.PID); strings.HasPrefix(rep.Verdict.Summary, held) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rep.Verdict.Kind != pyglass.VerdictGIL || !strings.HasPrefix(rep.Verdict.Summary, held) || len(rep.Cycles) != 0 {
			t.Fatalf("verdict %+v, cycles %v; want the GIL held by %d", rep.Verdict, rep.Cycles, truth["t1"])
		}
		if w := lockedThread(t, rep, truth["t2"]).WaitsFor; w.Kind != pyglass.WaitGIL || w.HolderTID != truth["t1"] {
			t.Errorf("busy thread waits for %+v, want the GIL held by %d", w, truth["t1"])
		}
		// Blocked in C (libc's sleep) with the GIL since it last ran
		// (or since the last pause made it run): a second later, how
		// long is said.
		// (The verdict is retried as above: the busy thread may be caught
		// between two of its timed waits for the GIL.)
		for try := 0; ; try++ {
			time.Sleep(1200 * time.Millisecond)
			rep = locksJSON(t, tg.PID)
			if !strings.HasPrefix(rep.Verdict.Summary, held) && try < 5 {
				continue
			}
			if !strings.Contains(rep.Verdict.Summary, " in C code for ") {
				t.Errorf("verdict %q does not say for how long the GIL has been held in C", rep.Verdict.Summary)
			}
			// and in which C functions: libc's sleep, called by ctypes
			hog := lockedThread(t, rep, truth["t1"])
			if len(hog.Native) == 0 || !strings.Contains(strings.Join(hog.Native, " "), "sleep") || !strings.Contains(rep.Verdict.Summary, "; in ") {
				t.Errorf("the GIL holder's C functions %q (verdict %q): want libc's sleep", hog.Native, rep.Verdict.Summary)
			}
			break
		}
		healthy(t, tg)
	})
}

// TestLocksInferredHolder: of two threads that refer to a Lock, the one
// in a with block over it is the inferred holder, not the one that only
// has it in a local; no deadlock.
func TestLocksInferredHolder(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, truth := startLocks(t, in, "ranked")
		rep := locksJSON(t, tg.PID)
		w := lockedThread(t, rep, truth["t1"]).WaitsFor
		if w.Kind != pyglass.WaitLock || w.HolderTID != truth["t2"] || !w.HolderInferred || !strings.Contains(w.Evidence, "with block") {
			t.Errorf("waiter waits for %+v, want a Lock held (inferred) by %d in a with block", w, truth["t2"])
		}
		if rep.Verdict.Kind != pyglass.VerdictBlocked || len(rep.Cycles) != 0 {
			t.Errorf("verdict %+v, cycles %v; want blocked, no cycle", rep.Verdict, rep.Cycles)
		}
		healthy(t, tg)
	})
}

// TestLocksImport: a module's code starts a thread and joins it while
// that thread imports the module: the thread waits for the module's lock
// (importlib's _ModuleLock; 2.7: the global import lock), whose owner is
// read from the lock, and the importer waits for the thread: a deadlock
// of two threads, and the target runs on.
func TestLocksImport(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, truth := startLocks(t, in, "import")
		rep := locksJSON(t, tg.PID)
		if rep.Verdict.Kind != pyglass.VerdictDeadlock || !strings.HasPrefix(rep.Verdict.Summary, "deadlock: 2 threads") {
			t.Errorf("verdict %+v, want a deadlock of 2 threads", rep.Verdict)
		}
		cyc := []int{min(truth["t1"], truth["t2"]), max(truth["t1"], truth["t2"])}
		if len(rep.Cycles) != 1 || !slices.Equal(rep.Cycles[0], cyc) {
			t.Errorf("cycles %v, want [%v]", rep.Cycles, cyc)
		}
		typ, where := "_ModuleLock", "import pg_import_a in helper"
		if in.Major < 3 {
			typ, where = "import lock", "import in helper"
		}
		w := lockedThread(t, rep, truth["t2"]).WaitsFor
		if w.Kind != pyglass.WaitLock || w.Type != typ || w.HolderTID != truth["t1"] || w.HolderInferred || !strings.HasPrefix(w.Where, where) || w.Object == "" {
			t.Errorf("helper waits for %+v, want the %s (%s) held by %d, read from the lock", w, typ, where, truth["t1"])
		}
		if w := lockedThread(t, rep, truth["t1"]).WaitsFor; w.Kind != pyglass.WaitJoin || w.HolderTID != truth["t2"] {
			t.Errorf("importer waits for %+v, want a join of %d", w, truth["t2"])
		}
		healthy(t, tg)
	})
}

// TestStacksWaiting: stacks gives each blocked thread what it waits for,
// as locks does (text: one "waiting for" line under its frames; --json:
// waiting_for), on the deadlock of two RLocks, and a thread that sleeps
// says so.
func TestStacksWaiting(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, truth := startLocks(t, in, "rlocks")
		r := run(t, nil, "stacks", "--json", strconv.Itoa(tg.PID))
		want(t, r, 0)
		var dump pyglass.StackDump
		if err := json.Unmarshal([]byte(r.Stdout), &dump); err != nil {
			t.Fatalf("stacks --json: %v\n%s", err, r.Stdout)
		}
		byTID := map[int]pyglass.ThreadStack{}
		for _, th := range dump.Threads {
			byTID[th.TID] = th
		}
		for _, k := range []string{"t1", "t2"} {
			other := truth[map[string]string{"t1": "t2", "t2": "t1"}[k]]
			w := byTID[truth[k]].WaitingFor
			if w == nil || w.Kind != pyglass.WaitLock || w.Type != "RLock" || w.HolderTID != other {
				t.Errorf("thread %s (%d) waiting_for %+v, want an RLock held by %d", k, truth[k], w, other)
			}
		}
		if w := byTID[truth["main"]].WaitingFor; w == nil || w.Kind != pyglass.WaitSyscall || !strings.Contains(w.Evidence, "time.sleep") {
			t.Errorf("main thread waiting_for %+v, want time.sleep", w)
		}
		txt := run(t, nil, "stacks", strconv.Itoa(tg.PID))
		want(t, txt, 0)
		// The line closes the thread's block: the last line before the next
		// thread (or the end).
		block := txt.Stdout[strings.Index(txt.Stdout, fmt.Sprintf("\nThread %d ", truth["t1"]))+1:]
		if end := strings.Index(block, "\n\n"); end >= 0 {
			block = block[:end]
		}
		lines := strings.Split(strings.TrimSpace(block), "\n")
		line := lines[len(lines)-1]
		if !strings.HasPrefix(line, "  waiting for RLock 0x") || !strings.Contains(line, "self._b in Cache.first") || !strings.HasSuffix(line, fmt.Sprintf(" held by thread %d", truth["t2"])) {
			t.Errorf("thread t1's last line %q, want waiting for RLock (self._b in Cache.first) held by thread %d\n%s", line, truth["t2"], txt.Stdout)
		}
		healthy(t, tg)
	})
}

// TestLocksSince: how long a deadlocked thread has waited is at least the
// time since the target said its threads were in place and at most the
// time since it was started (it blocked in between).
func TestLocksSince(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		started := time.Now()
		tg, truth := startLocks(t, in, "rlocks")
		ready := time.Now()
		time.Sleep(time.Second)
		least := time.Since(ready)
		r := run(t, nil, "locks", "--json", strconv.Itoa(tg.PID))
		most := time.Since(started)
		want(t, r, 0)
		var rep pyglass.LockReport
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("locks --json: %v\n%s", err, r.Stdout)
		}
		for _, k := range []string{"t1", "t2"} {
			w := lockedThread(t, &rep, truth[k]).WaitsFor
			if w.SinceSeconds == nil {
				t.Errorf("thread %s waits for %+v, with no since", k, w)
				continue
			}
			// The kernel's clock of a running thread lags by up to a tick.
			if s := time.Duration(*w.SinceSeconds * float64(time.Second)); s < least-least/10 || s > most {
				t.Errorf("thread %s waits since %v, want between %v and %v", k, s, least, most)
			}
		}
		if txt := run(t, nil, "locks", strconv.Itoa(tg.PID)); !strings.Contains(txt.Stdout, "    since: ") {
			t.Errorf("no since line in\n%s", txt.Stdout)
		}
		healthy(t, tg)
	})
}

// TestLocksSelect: a thread in select on a pipe whose writer is a child
// process, one polling a socket connected to a server thread, one in
// epoll on a pipe: each waits on I/O, named by its descriptor (for epoll,
// the ones it watches), with the process and descriptor at the other
// end; no deadlock.
func TestLocksSelect(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, truth := startLocks(t, in, "select")
		rep := locksJSON(t, tg.PID)
		if rep.Verdict.Kind == pyglass.VerdictDeadlock || len(rep.Cycles) != 0 {
			t.Errorf("verdict %+v, cycles %v; want no deadlock", rep.Verdict, rep.Cycles)
		}
		w := lockedThread(t, rep, truth["t1"]).WaitsFor
		if end := fmt.Sprintf("other end: process %d (sleep) fd 1", truth["child"]); w.Kind != pyglass.WaitIO || w.Type != "pipe" || w.Object != fmt.Sprintf("fd %d", truth["pipe_fd"]) || !strings.Contains(w.Evidence, end) {
			t.Errorf("selector waits for %+v, want the pipe fd %d, %s", w, truth["pipe_fd"], end)
		}
		w = lockedThread(t, rep, truth["t2"]).WaitsFor
		conn := fmt.Sprintf("-> 127.0.0.1:%d ESTABLISHED (fd %d), other end: process %d (", truth["port"], truth["sock_fd"], tg.PID)
		if w.Kind != pyglass.WaitIO || w.Type != "socket" || w.Object != fmt.Sprintf("fd %d", truth["sock_fd"]) || !strings.Contains(w.Evidence, conn) || !strings.Contains(w.Evidence, fmt.Sprintf(") fd %d", truth["server_fd"])) {
			t.Errorf("poller waits for %+v, want %s...) fd %d", w, conn, truth["server_fd"])
		}
		w = lockedThread(t, rep, truth["t3"]).WaitsFor
		// (2.7's epoll.poll, which does not retry on EINTR, must survive
		// the pause: pyglass restarts the call it interrupts)
		if w.Kind != pyglass.WaitIO || w.Type != "pipe" || w.Object != fmt.Sprintf("fd %d", truth["epoll_pipe"]) || !strings.Contains(w.Evidence, " on epoll fd ") {
			t.Errorf("epoller waits for %+v, want the pipe fd %d its epoll watches", w, truth["epoll_pipe"])
		}
		w = lockedThread(t, rep, truth["t4"]).WaitsFor
		if end := fmt.Sprintf("(fd %d), other end: process %d (", truth["unix_fd"], tg.PID); w.Kind != pyglass.WaitIO || w.Type != "socket" || !strings.Contains(w.Evidence, "unix socket:[") || !strings.Contains(w.Evidence, end) || !strings.Contains(w.Evidence, fmt.Sprintf(") fd %d", truth["unix_peer_fd"])) {
			t.Errorf("unix reader waits for %+v, want a unix socket %s...) fd %d", w, end, truth["unix_peer_fd"])
		}
		healthy(t, tg)
	})
}

// TestLocksCore: a core of a deadlocked process (`pyglass dump`) gives
// the report the live process gave: the same verdict, cycle, waits and
// holders (no since: a core has no scheduler; I/O waits are not named).
func TestLocksCore(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, scenario := range []string{"rlocks", "locks"} {
			t.Run(scenario, func(t *testing.T) {
				tg, truth := startLocks(t, in, scenario)
				live := locksJSON(t, tg.PID)
				core := filepath.Join(t.TempDir(), "core")
				want(t, run(t, nil, "dump", "-o", core, strconv.Itoa(tg.PID)), 0)
				r := run(t, nil, "locks", "--json", "--core", core)
				want(t, r, 0)
				var dead pyglass.LockReport
				if err := json.Unmarshal([]byte(r.Stdout), &dead); err != nil {
					t.Fatalf("locks --core --json: %v\n%s", err, r.Stdout)
				}
				if dead.Core == nil || dead.PID != tg.PID {
					t.Errorf("pid %d, core %+v: want %d and the core described", dead.PID, dead.Core, tg.PID)
				}
				checkCycle(t, &dead, truth, map[string]string{"rlocks": "RLock", "locks": "Lock"}[scenario], scenario == "locks", "t1", "t2")
				if dead.Verdict != live.Verdict || fmt.Sprint(dead.Cycles) != fmt.Sprint(live.Cycles) {
					t.Errorf("core: verdict %+v cycles %v; live: %+v %v", dead.Verdict, dead.Cycles, live.Verdict, live.Cycles)
				}
				for _, name := range []string{"t1", "t2"} {
					a, b := lockedThread(t, live, truth[name]).WaitsFor, lockedThread(t, &dead, truth[name]).WaitsFor
					a.SinceSeconds = nil
					if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", b) {
						t.Errorf("%s waits for\n  %+v in the core,\n  %+v live", name, b, a)
					}
				}
				txt := run(t, nil, "locks", "--core", core)
				want(t, txt, 0)
				if !strings.HasPrefix(txt.Stdout, "deadlock") {
					t.Errorf("text report of the core:\n%s", txt.Stdout)
				}
				healthy(t, tg)
			})
		}
	})
}
