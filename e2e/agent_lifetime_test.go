package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/leak"
)

// hookTarget calls __main__.hook(), once an exec installed it, every 10 ms
// and prints "HOOK ok" or "HOOK error Type: message" when the outcome
// changes (Python 2.7 and 3.x).
const hookTarget = `import sys, time
last = None
sys.stdout.write('READY\n')
sys.stdout.flush()
while True:
    h = globals().get('hook')
    if h is not None:
        try:
            h()
            now = 'ok'
        except Exception as e:
            now = 'error %s: %s' % (type(e).__name__, e)
        if now != last:
            sys.stdout.write('HOOK %s\n' % now)
            sys.stdout.flush()
            last = now
    time.sleep(0.01)
`

// installHook is exec'd in a fresh namespace: a timing wrapper that uses
// the namespace's imports and functions, installed in __main__, and a
// thread that uses them after the exec has ended.
const installHook = `import time, __main__
try:
    import _thread as threadmod
except ImportError:
    import thread as threadmod
calls = []
def timed(f):
    def wrapper():
        t0 = time.time()
        try:
            return f()
        finally:
            calls.append(time.time() - t0)
    return wrapper
__main__.hook = timed(lambda: None)
def later():
    time.sleep(0.5)
    __main__.thread_result = 'thread ok after %d calls' % len(calls)
threadmod.start_new_thread(later, ())
print('installed')
`

// TestExecLeftoversKeepWorking: a wrapper that an exec installs in the
// target, and a thread it starts, keep working after the exec ended: the
// namespace they use as globals is not emptied. --namespace main runs in
// __main__'s globals.
func TestExecLeftoversKeepWorking(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, hookTarget)
		pid := strconv.Itoa(tg.PID)
		r := run(t, nil, "exec", pid, "-c", installHook)
		want(t, r, 0)
		if r.Stdout != "installed\n" {
			t.Fatalf("exec: %s", r)
		}
		// The target's first call may come before the exec ended: wait
		// for calls after it.
		time.Sleep(300 * time.Millisecond)
		r = run(t, nil, "exec", "--namespace", "main", pid, "-c", "print('%s %s %s' % (__name__, hook(), len(hook.__globals__['calls']) > 0))")
		want(t, r, 0)
		if r.Stdout != "__main__ None True\n" {
			t.Fatalf("the hook in __main__: %s", r)
		}
		for _, l := range tg.Stdout() {
			if strings.HasPrefix(l, "HOOK error") {
				t.Fatalf("the target's calls to the hook failed: %q", l)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			r = run(t, nil, "exec", "--namespace", "main", pid, "-c", "print(globals().get('thread_result'))")
			want(t, r, 0)
			if strings.HasPrefix(r.Stdout, "thread ok after ") {
				break
			}
			if r.Stdout != "None\n" || time.Now().After(deadline) {
				t.Fatalf("the exec's thread: %s", r)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The wrapper's namespace is still there and still works.
		r = run(t, nil, "exec", "--namespace", "main", pid, "-c", "x_from_main = 42")
		want(t, r, 0)
		r = run(t, nil, "exec", pid, "-c", "import __main__; print('%s %s' % (__main__.x_from_main, sorted(__main__.hook.__globals__)[:3]))")
		want(t, r, 0)
		if r.Stdout != "42 ['__builtins__', '__main__', '__name__']\n" {
			t.Fatalf("after the thread ended: %s", r)
		}
		healthy(t, tg)
		noTraces(t, tg)
	})
}

// forkTarget forks a child when an exec sets fork_now; the child reports
// whether it kept anything of the pyglass session that was active at the
// fork: the hub, the routers on sys.stdout, the session's socket. Before
// 3.7 the child then lives on.
const forkTarget = `import os, sys, time, warnings
warnings.simplefilter('ignore')
orig = sys.stdout
def sockets():
    n = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + fd).startswith('socket:'):
                n += 1
        except OSError:
            pass
    return n
base = sockets()
STAY = sys.version_info < (3, 7)  # the child lives on: no fork handlers
fork_now = False
fork_done = False
sys.stdout.write('READY\n')
sys.stdout.flush()
while True:
    if fork_now:
        fork_now = False
        pid = os.fork()
        if pid == 0:
            orig.write('CHILD hub=%s routed=%s sockets=%d base=%d pid=%d\n' % (
                hasattr(sys, '_pyglass_hub'), sys.stdout is not orig, sockets(), base, os.getpid()))
            orig.flush()
            if STAY:
                while True:
                    time.sleep(0.05)
            os._exit(0)
        if not STAY:
            os.waitpid(pid, 0)
        fork_done = True
    time.sleep(0.005)
`

// forkDuringExec is exec'd: it makes the target's main thread fork while
// the session is active and waits for it.
const forkDuringExec = `import __main__, time
__main__.fork_done = False
__main__.fork_now = True
for i in range(3000):
    if __main__.fork_done:
        break
    time.sleep(0.01)
print('forked' if __main__.fork_done else 'no fork')
`

// TestForkDuringExec: a child forked while an exec runs keeps neither the
// agent's socket nor the stream routers (3.7+: os.register_at_fork); before
// 3.7 it keeps them until the first pyglass session in it, which cleans
// them up.
func TestForkDuringExec(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, forkTarget)
		pid := strconv.Itoa(tg.PID)
		if !in.AtLeast(3, 7) {
			r := run(t, nil, "exec", pid, "-c", forkDuringExec)
			want(t, r, 0)
			line := tg.WaitLine("CHILD ", 10*time.Second)
			f := fields(t, line)
			// The session's socket, and its reader's (a dup) while
			// the code runs.
			if !strings.Contains(line, "hub=True routed=True") || f["sockets"] < f["base"]+1 || f["sockets"] > f["base"]+2 {
				t.Fatalf("without fork handlers the child should keep the session until pyglass runs in it: %q", line)
			}
			child := int(f["pid"])
			r = run(t, nil, "exec", strconv.Itoa(child), "-c", "import sys; print(len(sys._pyglass_hub['sessions']))")
			want(t, r, 0)
			if r.Stdout != "1\n" {
				t.Fatalf("the child's session shares a hub with the parent's: %s", r)
			}
			if n := settled(func() int { _, s := fdCount(t, child); return s }); int64(n) != f["base"] {
				t.Fatalf("after an exec in it, the child has %d sockets, %d before the fork", n, f["base"])
			}
			healthy(t, tg)
			noTraces(t, tg)
			return
		}
		for i := 0; i < 2; i++ { // the second fork: the handler is registered once
			r := run(t, nil, "exec", pid, "-c", forkDuringExec)
			want(t, r, 0)
			if r.Stdout != "forked\n" {
				t.Fatalf("exec: %s", r)
			}
			line := tg.WaitLine("CHILD ", 10*time.Second)
			f := fields(t, line)
			if !strings.Contains(line, "hub=False routed=False") || f["sockets"] != f["base"] {
				t.Fatalf("fork %d: the child kept the session: %q", i+1, line)
			}
		}
		healthy(t, tg)
		noTraces(t, tg)
	})
}

// TestLeakReportsLeaveNoGarbage: the leak reports leave nothing that the
// next garbage --saveall reports as the target's (the modules they import
// used to be taken out of sys.modules again, leaving them, their specs
// and their functions as cyclic garbage).
func TestLeakReportsLeaveNoGarbage(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		reports := [][]string{{"objects"}, {"objects", "--all"}, {"gc"}, {"garbage"}}
		if in.Major >= 3 {
			reports = append(reports, []string{"trace", "status"}) // tracemalloc: 3.4+
		}
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("interval=0.01"))
		pid := strconv.Itoa(tg.PID)
		var g leak.GarbageReport
		decode(t, &g, "garbage", "--saveall", pid, "--json") // what the target had
		for round := 0; round < 2; round++ {
			for _, args := range reports {
				want(t, run(t, nil, append(append([]string{}, args...), pid)...), 0)
			}
			g = leak.GarbageReport{}
			r := decode(t, &g, "garbage", "--saveall", pid, "--json")
			if g.Total != 0 {
				t.Fatalf("round %d: the reports left %d objects of garbage: %s", round+1, g.Total, r)
			}
		}
		healthy(t, tg)
		noTraces(t, tg)
	})
}

// fdCount is the number of open file descriptors of pid, and of those
// that are sockets.
// fdLinks lists pid's descriptors and what they are, for a failure.
func fdLinks(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			l = err.Error()
		}
		out = append(out, e.Name()+" "+l)
	}
	return strings.Join(out, ", ")
}

func fdCount(t testing.TB, pid int) (all, sockets int) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing the fds of %d: %v", pid, err)
	}
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	return len(ents), sockets
}
