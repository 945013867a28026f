package ptrace

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// threadsScript runs 4 threads sleeping in a loop and has a SIGUSR1
// handler that prints a line.
const threadsScript = `
import threading, time, signal, sys
signal.signal(signal.SIGUSR1, lambda *a: (sys.stdout.write("usr1\n"), sys.stdout.flush()))
def loop():
    while True:
        time.sleep(0.01)
for _ in range(3):
    t = threading.Thread(target=loop)
    t.daemon = True
    t.start()
sys.stdout.write("READY\n"); sys.stdout.flush()
while True:
    time.sleep(0.01)
`

// startThreads runs threadsScript on in; the process is killed when the
// test ends, and the test fails if it cannot be reaped then (a thread
// left traced by a tracer thread that no longer waits for it).
func startThreads(t *testing.T, in testenv.Interp) *testenv.Target {
	t.Helper()
	tg := testenv.Start(t, in, threadsScript)
	t.Cleanup(func() {
		tg.Kill()
		if done, _ := tg.Exited(); !done {
			t.Errorf("target %d could not be reaped after SIGKILL: a thread is still traced", tg.PID)
		}
	})
	testenv.WaitUntil(t, 10*time.Second, "the target runs 4 threads", func() bool {
		tids, _ := procfs.New(tg.PID).TaskIDs()
		return len(tids) == 4
	})
	return tg
}

// released fails the test if a thread of pid is stopped or traced.
func released(t *testing.T, pid int, when string) {
	t.Helper()
	for tid, st := range states(t, pid) {
		if st == 't' || st == 'T' {
			t.Errorf("thread %d in state %c %s", tid, st, when)
		}
		if st, err := procfs.New(pid).TaskStatus(tid); err != nil || st.TracerPid != 0 {
			t.Errorf("thread %d traced (%+v, %v) %s", tid, st, err, when)
		}
	}
}

func states(t *testing.T, pid int) map[int]byte {
	t.Helper()
	tids, err := procfs.New(pid).TaskIDs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]byte{}
	for _, tid := range tids {
		st, err := procfs.New(pid).TaskStat(tid)
		if err == nil {
			out[tid] = st.State
		}
	}
	return out
}

func TestFreezeThaw(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		pid := startThreads(t, in).PID
		for i := 0; i < 20; i++ {
			t0 := time.Now()
			f, err := Freeze(pid)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(t0)
			if len(f.Tids) != 4 {
				t.Errorf("froze %d threads, want 4", len(f.Tids))
			}
			for tid, st := range states(t, pid) {
				if st != 't' {
					t.Errorf("thread %d in state %c while frozen", tid, st)
				}
			}
			if err := f.Thaw(); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				t.Logf("froze %d threads in %v", len(f.Tids), took)
			}
			released(t, pid, "after thaw")
		}
	})
}

// TestFreezeHere: FreezeHere holds every thread with the calling
// goroutine's thread as the tracer; the threads' registers are read from
// it; a Thaw from another goroutine is refused (ErrWrongThread) and
// leaves the threads held, for the Thaw of the freezing goroutine, which
// lets them all go.
func TestFreezeHere(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		pid := startThreads(t, in).PID
		for i := 0; i < 10; i++ {
			f, err := FreezeHere(pid)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tids) != 4 {
				t.Errorf("froze %d threads, want 4", len(f.Tids))
			}
			for tid, st := range states(t, pid) {
				if st != 't' {
					t.Errorf("thread %d in state %c while frozen", tid, st)
				}
			}
			if held := f.Inspect(); len(held) != 4 {
				t.Errorf("registers of %d threads read, want 4", len(held))
			}
			other := make(chan error)
			go func() { other <- f.Thaw() }()
			if err := <-other; !errors.Is(err, ErrWrongThread) {
				t.Fatalf("Thaw from another goroutine: %v, want ErrWrongThread", err)
			}
			for tid, st := range states(t, pid) {
				if st != 't' {
					t.Errorf("thread %d in state %c after the refused Thaw", tid, st)
				}
			}
			if err := f.Thaw(); err != nil {
				t.Fatal(err)
			}
			released(t, pid, "after thaw")
		}
	})
}

func TestFreezeKeepsGroupStop(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		pid := startThreads(t, in).PID
		allStopped := func() bool {
			for _, st := range states(t, pid) {
				if st != 'T' {
					return false
				}
			}
			return true
		}
		syscall.Kill(pid, syscall.SIGSTOP)
		testenv.WaitUntil(t, 5*time.Second, "every thread is stopped by SIGSTOP", allStopped)
		f, err := Freeze(pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Thaw(); err != nil {
			t.Fatal(err)
		}
		// Thaw detached every thread: each re-enters the group stop (T)
		// after a moment of running; a thread that was let go runs on.
		if err := testenv.TryWaitUntil(5*time.Second, allStopped); err != nil {
			t.Errorf("after Freeze/Thaw of a stopped process, threads in states %v, want all T", states(t, pid))
		}
		syscall.Kill(pid, syscall.SIGCONT)
		testenv.WaitUntil(t, 5*time.Second, "every thread runs again after SIGCONT", func() bool {
			for _, st := range states(t, pid) {
				if st == 'T' || st == 't' {
					return false
				}
			}
			return true
		})
	})
}

// TestSignalWhileFrozen: a signal sent while the process is frozen is
// delivered after Thaw.
func TestSignalWhileFrozen(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startThreads(t, in)
		f, err := Freeze(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Kill(tg.PID, syscall.SIGUSR1)
		time.Sleep(20 * time.Millisecond) // the signal stays pending while frozen
		if len(tg.Stdout()) != 1 {
			t.Errorf("the target printed while frozen: %q", tg.Stdout())
		}
		if err := f.Thaw(); err != nil {
			t.Fatal(err)
		}
		if _, err := tg.TryWaitLine("usr1", 5*time.Second); err != nil {
			t.Fatalf("SIGUSR1 not delivered after thaw: %v", err)
		}
	})
}

// TestFreezeTracedThread: when one thread (not the main one) is traced
// by another tracer, Freeze refuses with ErrPermission and names that
// thread, its tracer's pid and name (from procfs), and leaves the other
// threads released.
func TestFreezeTracedThread(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		pid := startThreads(t, in).PID
		tids, err := procfs.New(pid).TaskIDs()
		if err != nil || len(tids) < 2 {
			t.Fatalf("threads %v %v", tids, err)
		}
		tid := tids[len(tids)-1]
		other := NewTracer()
		defer other.Close()
		if err := other.Do(func() error { return Seize(tid, 0) }); err != nil {
			t.Fatal(err)
		}
		_, err = Freeze(pid)
		other.Do(func() error {
			Interrupt(tid)
			Wait(tid)
			return Detach(tid, 0)
		})
		// TracerPid is the tracing thread's id: one of ours.
		want := fmt.Sprintf("thread %d of process %d is already traced by pid ", tid, pid)
		var tracer int
		var comm string
		if err != nil {
			if _, after, ok := strings.Cut(err.Error(), want); ok {
				fmt.Sscanf(after, "%d (%s", &tracer, &comm)
			}
		}
		self, _ := procfs.Self().Comm()
		if !errors.Is(err, ErrPermission) || !procfs.Self().HasTask(tracer) || self == "" || comm != self+")" {
			t.Fatalf("Freeze with thread %d traced by us: %v; want ErrPermission, %q, one of our threads and (%s)", tid, err, want, self)
		}
		testenv.WaitUntil(t, 5*time.Second, "the other tracer's detach takes effect", func() bool {
			st, err := procfs.New(pid).TaskStatus(tid)
			return err == nil && st.TracerPid == 0
		})
		released(t, pid, "after a refused Freeze")
	})
}

func TestFreezeGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1)")
	}
	if _, err := Freeze(cmd.Process.Pid); err == nil {
		t.Fatal("Freeze of an exited process succeeded")
	}
}

// TestThawBeforeStopped: a Freeze that gives up early (a thread refused,
// say) thaws threads it interrupted that have not reached their stop yet.
// PTRACE_DETACH refuses a thread that is not in a ptrace stop; Thaw must
// wait for the stop and detach it then, not leave it traced (and stopped,
// once its interrupt arrives) by a tracer thread that has moved on.
func TestThawBeforeStopped(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		pid := startThreads(t, in).PID
		for i := 0; i < 50; i++ {
			tids, err := procfs.New(pid).TaskIDs()
			if err != nil {
				t.Fatal(err)
			}
			f := &Frozen{Pid: pid, t: NewTracer(), sigs: map[int]syscall.Signal{}}
			err = f.t.Do(func() error {
				for _, tid := range tids {
					if err := Seize(tid, 0); err != nil {
						return err
					}
					f.Tids = append(f.Tids, tid)
					if err := Interrupt(tid); err != nil {
						return err
					}
				}
				return nil
			})
			if terr := f.Thaw(); terr != nil {
				t.Fatalf("thaw: %v", terr)
			}
			if err != nil {
				t.Fatal(err)
			}
			released(t, pid, fmt.Sprintf("after thaw, round %d", i))
			if t.Failed() {
				return
			}
		}
	})
}

// epollScript waits in epoll_wait with no timeout (nothing ever becomes
// ready) and prints "usr1" from its SIGUSR1 handler. Python runs the
// handler only when the wait fails with EINTR.
const epollScript = `
import errno, os, select, signal, sys
def on_usr1(*a):
    sys.stdout.write("usr1\n")
    sys.stdout.flush()
signal.signal(signal.SIGUSR1, on_usr1)
ep = select.epoll()
r, w = os.pipe()
ep.register(r, select.EPOLLIN)
sys.stdout.write("READY\n")
sys.stdout.flush()
while True:
    try:
        ep.poll(-1)
    except (IOError, OSError) as e:
        if e.errno != errno.EINTR:
            raise
`

// TestSignalWhileFrozenInEpoll: a signal sent while the threads are held
// reaches the program's handler after Thaw even when the thread was
// stopped in epoll_wait, a call a ptrace stop ends with EINTR and that
// Thaw otherwise runs again so that the program does not see the EINTR.
// Run again, the call would block, and the handler's work would wait
// for an event that never comes.
func TestSignalWhileFrozenInEpoll(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, epollScript)
		waitEpoll := func() {
			testenv.WaitUntil(t, 10*time.Second, "the main thread waits in epoll_wait", func() bool {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", tg.PID))
				if err != nil || len(b) == 0 {
					return false
				}
				nr := strings.Fields(string(b))[0]
				return nr == "232" || nr == "281" || nr == "441" || nr == "22" // epoll_wait, epoll_pwait(2); arm64 epoll_pwait
			})
		}
		waitEpoll()
		f, err := Freeze(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Kill(tg.PID, syscall.SIGUSR1)
		time.Sleep(20 * time.Millisecond) // pending while frozen
		if err := f.Thaw(); err != nil {
			t.Fatal(err)
		}
		if _, err := tg.TryWaitLine("usr1", 5*time.Second); err != nil {
			t.Fatalf("the SIGUSR1 handler did not run after thaw: %v", err)
		}
		// And without a signal the pause stays unseen: after a second
		// freeze and thaw the thread waits in epoll_wait again, and a
		// signal sent then still reaches the handler. (A signal sent at
		// the instant the thread resumes can find the call already
		// restarted, and wait with it: the kernel's own window for any
		// restarted call, not looked at here.)
		before := len(tg.Stdout())
		f, err = Freeze(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Thaw(); err != nil {
			t.Fatal(err)
		}
		waitEpoll()
		time.Sleep(50 * time.Millisecond)
		if got := tg.Stdout(); len(got) != before {
			t.Fatalf("the thread left its wait after a freeze without a signal: %q", got[before:])
		}
		syscall.Kill(tg.PID, syscall.SIGUSR1)
		testenv.WaitUntil(t, 5*time.Second, "a second usr1 line", func() bool {
			return len(tg.Stdout()) > before
		})
	})
}

// sysvScript runs a thread blocked in semop and one in semtimedop (30 s)
// on a System V semaphore; a line on stdin releases both, and each
// prints what its call returned ("semop 0", or "semop -1 EINTR ...").
const sysvScript = `
import ctypes, ctypes.util, errno, sys, threading
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
class sembuf(ctypes.Structure):
    _fields_ = [("num", ctypes.c_ushort), ("op", ctypes.c_short), ("flg", ctypes.c_short)]
class timespec(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
sid = libc.semget(0, 1, 0o600)
def wait(name, timeout):
    b = sembuf(0, -1, 0)
    if timeout:
        r = libc.semtimedop(sid, ctypes.byref(b), 1, ctypes.byref(timespec(30, 0)))
    else:
        r = libc.semop(sid, ctypes.byref(b), 1)
    e = ctypes.get_errno()
    sys.stdout.write("%s %d %s\n" % (name, r, errno.errorcode.get(e, "") if r else ""))
    sys.stdout.flush()
ts = [threading.Thread(target=wait, args=a) for a in (("semop", False), ("semtimedop", True))]
for t in ts:
    t.start()
sys.stdout.write("READY\n"); sys.stdout.flush()
sys.stdin.readline()
libc.semop(sid, ctypes.byref(sembuf(0, 2, 0)), 1)
for t in ts:
    t.join()
libc.semctl(sid, 0, 0)
sys.stdout.write("DONE\n"); sys.stdout.flush()
`

// TestFreezeSysVSemaphores: a pause does not make semop or semtimedop
// fail. Interrupted by a ptrace stop they return EINTR, not a restart
// code (signal(7)); Thaw has the kernel run them again, and they return
// when the semaphore is released, as without the pause.
func TestFreezeSysVSemaphores(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, sysvScript) // (returns once it said READY)
		testenv.WaitUntil(t, 10*time.Second, "two threads wait in semop and semtimedop", func() bool {
			n := 0
			tids, _ := procfs.New(tg.PID).TaskIDs()
			for _, tid := range tids {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", tg.PID, tid))
				if err != nil || len(b) == 0 {
					continue
				}
				switch strings.Fields(string(b))[0] {
				case "65", "220", "193", "192": // semop, semtimedop (amd64, arm64)
					n++
				}
			}
			return n == 2
		})
		for _, here := range []bool{false, true} {
			freeze := Freeze
			if here {
				freeze = FreezeHere
			}
			f, err := freeze(tg.PID)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Thaw(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		tg.Send("")
		tg.WaitLine("DONE", 10*time.Second)
		for _, l := range tg.Stdout() {
			if strings.HasPrefix(l, "sem") && !strings.HasSuffix(strings.TrimSpace(l), " 0") {
				t.Errorf("after a freeze: %q", l)
			}
		}
	})
}
