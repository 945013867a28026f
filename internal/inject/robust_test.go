package inject

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/internal/testenv"
)

type stats struct{ held, wall []time.Duration }

func (s *stats) add(r Result) { s.held = append(s.held, r.Held); s.wall = append(s.wall, r.Wall) }
func (s *stats) String() string {
	q := func(d []time.Duration, p float64) time.Duration {
		c := append([]time.Duration(nil), d...)
		sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
		return c[int(float64(len(c)-1)*p)]
	}
	return "held p50 " + q(s.held, .5).String() + " p95 " + q(s.held, .95).String() + " max " + q(s.held, 1).String() +
		"; wall p50 " + q(s.wall, .5).String() + " max " + q(s.wall, 1).String()
}

// TestBlockedTargetsSurvive: 50 injections into programs blocked in sleep,
// select, accept and recv; Python 2.7 raises on any EINTR.
func TestBlockedTargetsSurvive(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, mode := range []string{"sleep", "select", "accept", "recv"} {
			t.Run(mode, func(t *testing.T) {
				tg := startTarget(t, in, mode)
				syms := resolve(t, tg.pid)
				var st stats
				for i := 0; i < 50; i++ {
					res, err := StartThread(tg.pid, syms, []byte("x = 1\n"), Options{AvoidEINTR: in.Major == 2})
					if err != nil {
						t.Fatalf("injection %d: %v", i, err)
					}
					st.add(res)
					if i%10 == 0 {
						time.Sleep(5 * time.Millisecond) // let the target run between bursts
					}
				}
				checkReleased(t, tg.pid)
				tg.progresses()
				t.Logf("50 injections: %s", &st)
			})
		}
	})
}

// TestBusyTarget: a CPU-bound single-threaded program; on 2.7/3.6 it has
// never started a thread, so the pending-call path is used.
func TestBusyTarget(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "busy")
		res := injectMarker(t, tg, Options{AvoidEINTR: in.Major == 2})
		// The fixture prints its progress: caught in that write, the
		// thread is in a system call, where initialising threads on it
		// is the right strategy; running Python, it is the pending call.
		inSyscall := strings.Contains(res.Why, "syscall")
		if !in.AtLeast(3, 7) && res.Strategy != "pending-call" && !(inSyscall && res.Strategy == "init-threads+new-thread") {
			t.Errorf("strategy %s (thread %s), want pending-call", res.Strategy, res.Why)
		}
		syms := resolve(t, tg.pid)
		var st stats
		for i := 0; i < 20; i++ {
			res, err := StartThread(tg.pid, syms, []byte("y = 2\n"), Options{})
			if err != nil {
				t.Fatalf("injection %d: %v", i, err)
			}
			st.add(res)
		}
		tg.progresses()
		t.Logf("20 injections into a busy loop: %s", &st)
	})
}

// TestTracemallocLockNotHeld: a thread stopped inside tracemalloc's
// allocation hooks holds tracemalloc's table lock; the chain that runs on
// it must not allocate through the interpreter's allocator (which would
// take that lock again, on the same thread: a deadlock that left the
// target hung with the GIL held, or crashed it). Injections into a target
// whose main thread allocates all the time with tracemalloc on, until
// ten of them borrowed it in interpreter code (at least five, within 300),
// all succeed, and the target goes on. (Before the chain used pthread_create directly, one of
// the first five hung on 3.8, 3.11 and 3.13 and crashed 3.12.)
func TestTracemallocLockNotHeld(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 4) {
			testenv.Skipf(t, "Python %s has no tracemalloc (3.4+)", in.Version())
		}
		tg := startTarget(t, in, "tracemalloc")
		// The fixture's own pace, before anything is done to it: 200
		// loops with tracemalloc on (seconds for a debug build on a
		// loaded machine). The check that it goes on after the
		// injections (400 loops) gets twenty times that, 15 s at least.
		tg.wait = 2 * time.Minute
		t0 := time.Now()
		tg.waitNew(0, "wake", 1)
		tg.wait = max(15*time.Second, 20*time.Since(t0))
		syms := resolve(t, tg.pid)
		if syms.PthreadCreate == 0 {
			t.Fatalf("pthread_create not resolved in the target's C library: %+v", syms)
		}
		var st stats
		inLib, n := 0, 0
		// (until 10 injections borrowed the thread in interpreter code,
		// where it may hold the lock: one in five to one in twenty does,
		// fewer on a loaded machine)
		for ; n < 300 && inLib < 10; n++ {
			res, err := StartThread(tg.pid, syms, []byte("y = 2\n"), Options{Timeout: 10 * time.Second})
			if err != nil {
				t.Fatalf("injection %d (after %d borrowed in interpreter code): %v", n, inLib, err)
			}
			if strings.Contains(res.Why, "interpreter code") {
				inLib++
			}
			st.add(res)
		}
		if inLib < 5 { // (the old code hung within five such)
			t.Errorf("only %d of %d injections borrowed the thread in interpreter code: the lock was not put to the test", inLib, n)
		}
		tg.progresses()
		t.Logf("%d injections into a tracemalloc-busy loop, %d stopped in interpreter code: %s", n, inLib, &st)
	})
}

// TestStuckChainSaysWhere: a chain that does not finish in time (here
// made to deadlock on purpose: "pthread_attr_init" and
// "pthread_attr_setstacksize" are both pthread_mutex_lock on the same
// zeroed mutex, so the second call waits for ever, as a thread would on a
// C library lock it holds) is reported with where the thread is (a
// futex, in the C library) and how far the chain got, so that a CI
// failure says why. The target is broken by design here and killed.
func TestStuckChainSaysWhere(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "sleep")
		syms, all := resolveWith(t, tg.pid)
		lock := all["pthread_mutex_lock"]
		if lock == 0 || syms.PthreadCreate == 0 {
			t.Fatalf("pthread_mutex_lock or pthread_create not resolved in the target's C library")
		}
		syms.PthreadAttrInit, syms.PthreadAttrSetstacksize = lock, lock
		_, err := StartThread(tg.pid, syms, []byte("pass"), Options{Timeout: time.Second})
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want a timeout", err)
		}
		futex := "in syscall 202"
		if runtime.GOARCH == "arm64" {
			futex = "in syscall 98"
		}
		for _, want := range []string{"running the call", "new-thread, pthread_create called 0", "libc", futex} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, err)
			}
		}
		t.Logf("%v", err)
	})
}

func TestStoppedTargetRefused(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "sleep")
		syms := resolve(t, tg.pid)
		syscall.Kill(tg.pid, syscall.SIGSTOP)
		waitState(t, tg.pid, 'T')
		_, err := StartThread(tg.pid, syms, []byte("pass"), Options{})
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("err = %v, want ErrStopped", err)
		}
		if st, _ := taskState(tg.pid, tg.pid); st != 'T' {
			t.Errorf("state %c after refusal, want T", st)
		}
		syscall.Kill(tg.pid, syscall.SIGCONT)
		testenv.WaitUntil(t, 10*time.Second, "the target runs again after SIGCONT", func() bool { return tg.Healthy() == nil })
		tg.progresses()
	})
}

func TestAlreadyTracedIsPermission(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "sleep")
		syms := resolve(t, tg.pid)
		other := ptrace.NewTracer()
		defer other.Close()
		if err := other.Do(func() error { return ptrace.Seize(tg.pid, 0) }); err != nil {
			t.Fatal(err)
		}
		_, err := StartThread(tg.pid, syms, []byte("pass"), Options{})
		other.Do(func() error {
			ptrace.Interrupt(tg.pid)
			ptrace.Wait(tg.pid)
			return ptrace.Detach(tg.pid, 0)
		})
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "already traced") {
			t.Fatalf("err = %v, want ErrPermission naming the tracer", err)
		}
		t.Logf("error: %v", err)
		testenv.WaitUntil(t, 10*time.Second, "the other tracer's detach takes effect", func() bool { return tg.Healthy() == nil })
		tg.progresses()
	})
}

func TestGoneTarget(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "sleep")
		syms := resolve(t, tg.pid)
		tg.Kill()
		if done, _ := tg.Exited(); !done {
			t.Fatalf("target %d not reaped after SIGKILL", tg.pid)
		}
		_, err := StartThread(tg.pid, syms, []byte("pass"), Options{})
		if !errors.Is(err, ErrGone) {
			t.Fatalf("err = %v, want ErrGone", err)
		}
	})
}

// TestSelfRestore: the tracer lets go while the borrowed thread is in the
// chain (as if pyglass were SIGKILLed); the thread must restore itself.
func TestSelfRestore(t *testing.T) {
	testHookAbandon = func(_ int, step string) bool { return step == "chain" }
	t.Cleanup(func() { testHookAbandon = nil })
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, mode := range []string{"sleep", "accept", "busy"} {
			t.Run(mode, func(t *testing.T) {
				tg := startTarget(t, in, mode)
				syms := resolve(t, tg.pid)
				for i := 0; i < 3; i++ {
					path, inside := tg.marker()
					res, err := StartThread(tg.pid, syms, []byte(markerSrc(inside)), Options{AvoidEINTR: in.Major == 2})
					if err != nil {
						t.Fatal(err)
					}
					waitFile(t, path, 10*time.Second)
					checkReleased(t, tg.pid)
					if i == 0 {
						t.Logf("strategy %s, held %v", res.Strategy, res.Held)
					}
				}
				tg.progresses()
			})
		}
	})
}

func TestCancelledContext(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "sleep")
		syms := resolve(t, tg.pid)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := StartThreadContext(ctx, tg.pid, syms, []byte("pass"), Options{})
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		checkReleased(t, tg.pid)
		tg.checkHealthy()
	})
}

func waitState(t *testing.T, pid int, want byte) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if st, _ := taskState(pid, pid); st == want {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("process %d never reached state %c", pid, want)
}

// TestChainFaults: pyglass's own code faulting in the borrowed thread
// (here its first instruction, made one that always faults) must not
// kill the target nor hang: StartThread fails and says so, the thread
// gets its registers back, the fault is never delivered, and the target
// can be injected into afterwards. Both setups: the code cave and the
// one without.
func TestChainFaults(t *testing.T) {
	var broken sync.Map // pid -> true while its chains are to fault
	testHookBreakChain = func(pid int) bool { _, ok := broken.Load(pid); return ok }
	t.Cleanup(func() { testHookBreakChain = nil; testHookNoCave = false })
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, noCave := range []bool{false, true} {
			for _, mode := range []string{"select", "busy"} {
				name := mode
				if noCave {
					name += "/no-cave"
				}
				t.Run(name, func(t *testing.T) {
					testHookNoCave = noCave
					defer func() { testHookNoCave = false }()
					tg := startTarget(t, in, mode)
					syms := resolve(t, tg.pid)
					opt := Options{AvoidEINTR: in.Major == 2, Timeout: 10 * time.Second}
					broken.Store(tg.pid, true)
					path, inside := tg.marker()
					t0 := time.Now()
					_, err := StartThread(tg.pid, syms, []byte(markerSrc(inside)), opt)
					broken.Delete(tg.pid)
					if err == nil || !strings.Contains(err.Error(), "faulted") {
						t.Fatalf("StartThread with a faulting chain: err = %v, want the fault named", err)
					}
					if d := time.Since(t0); d > 5*time.Second {
						t.Errorf("the fault was reported after %v", d)
					}
					checkReleased(t, tg.pid)
					tg.checkHealthy()
					if _, err := os.Stat(path); err == nil {
						t.Errorf("the marker ran")
					}
					injectMarker(t, tg, opt)
					tg.progresses()
				})
			}
		}
	})
}
