package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// textAgrees fails unless the text form of stacks heads each thread of d
// with the same tid and name as the JSON.
func textAgrees(t *testing.T, pid int, d *pyglass.StackDump, extra ...string) {
	t.Helper()
	r := run(t, nil, append(append([]string{"stacks"}, extra...), strconv.Itoa(pid))...)
	want(t, r, 0)
	for _, th := range d.Threads {
		if th.TID == 0 {
			continue
		}
		if h := fmt.Sprintf("\nThread %d %q (", th.TID, th.Name); !strings.Contains(r.Stdout, h) {
			t.Errorf("text lacks the heading %q:\n%s", h, r.Stdout)
		}
	}
}

// TestStacksAgentThreadNamed: while `pyglass exec` runs code in the
// target, stacks shows pyglass's own agent thread as "pyglass agent", in
// the JSON and in the text, and the program's threads by their names.
func TestStacksAgentThreadNamed(t *testing.T) {
	forLabels(t, []string{"2.7", "3.12", "3.14-chroot"}, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("threads=1", "interval=0.05"))
		cmd := exec.Command(testenv.BuildPyglass(t), "exec", strconv.Itoa(tg.PID), "-c", "import time\ntime.sleep(3)")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		// The agent starts its reader thread once it runs: a dump taken
		// while that thread has no Python frame yet cannot tell it is
		// the agent's (it has the kernel's name, or none on 3.12 before
		// the thread binds its state). Wait for a dump where every
		// thread is named.
		var agent *pyglass.ThreadStack
		var d *pyglass.StackDump
		settled := func(d *pyglass.StackDump) bool {
			for _, th := range d.Threads {
				if th.Name != "MainThread" && th.Name != "worker-1" && th.Name != pyglass.AgentThreadName {
					return false
				}
			}
			return true
		}
		for try := 0; (agent == nil || !settled(d)) && try < 100; try++ {
			time.Sleep(30 * time.Millisecond)
			d = stacksJSON(t, tg.PID)
			agent = nil
			for i, th := range d.Threads {
				for _, f := range th.Frames {
					if f.File == "<pyglass-agent>" {
						agent = &d.Threads[i]
					}
				}
			}
		}
		if agent == nil {
			t.Fatalf("the agent thread never showed: %+v", d.Threads)
		}
		if agent.Name != pyglass.AgentThreadName || agent.TID == 0 {
			t.Errorf("agent thread %+v, want the name %q and its tid", agent, pyglass.AgentThreadName)
		}
		names := map[string]int{}
		for _, th := range d.Threads {
			names[th.Name]++
		}
		// While code runs the agent has two threads: the one running it
		// and its reader (Ctrl-C), both pyglass's.
		agents := names[pyglass.AgentThreadName]
		if names["MainThread"] != 1 || names["worker-1"] != 1 || agents < 1 || agents > 2 || len(d.Threads) != 2+agents {
			t.Errorf("threads %v, want MainThread, worker-1 and the agent's", names)
		}
		textAgrees(t, tg.PID, d)
		nb := stacksJSON(t, tg.PID, "--nonblocking")
		if _, n := threadByName(nb, pyglass.AgentThreadName); n < 1 || n > 2 {
			t.Errorf("--nonblocking: %d threads named %q", n, pyglass.AgentThreadName)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exec: %v", err)
		}
		healthy(t, tg)
	})
}

// printerScript: the main thread writes to sys.stdout without end, so
// that while a session runs it is most often inside the agent's
// sys.stdout router.
const printerScript = `
import os, sys, threading, time


def worker():
    while True:
        time.sleep(3600)


threading.Thread(target=worker, name="worker-1").start()
sys.stdout.write("READY pid=%d\n" % os.getpid())
sys.stdout.flush()
while True:
    sys.stdout.write("")
`

// TestStacksRouterKeepsName: a program thread that is, at the moment
// stacks reads it, inside the agent's sys.stdout router (every print
// goes through it while a session runs) keeps its own name; only the
// agent's threads are "pyglass agent".
func TestStacksRouterKeepsName(t *testing.T) {
	forLabels(t, []string{"2.7", "3.12", "3.14-chroot"}, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, printerScript)
		cmd := exec.Command(testenv.BuildPyglass(t), "exec", strconv.Itoa(tg.PID), "-c", "import time\ntime.sleep(3)")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		inRouter := 0 // reads that found the main thread in the router
		for try := 0; inRouter < 3 && try < 150; try++ {
			time.Sleep(20 * time.Millisecond)
			d := stacksJSON(t, tg.PID)
			for _, th := range d.Threads {
				if !th.Main {
					continue
				}
				if th.Name != "MainThread" {
					t.Fatalf("the main thread is named %q, want MainThread: %+v", th.Name, th.Frames)
				}
				if n := len(th.Frames); n > 0 && th.Frames[n-1].File == "<pyglass-agent>" {
					inRouter++
				}
			}
			if _, n := threadByName(d, pyglass.AgentThreadName); n > 2 {
				t.Fatalf("%d threads named %q", n, pyglass.AgentThreadName)
			}
		}
		if inRouter < 3 {
			t.Fatalf("the main thread was seen in the agent's router %d times in 150 reads, want 3: the test proves nothing", inRouter)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exec: %v", err)
		}
		healthy(t, tg)
	})
}

// gevent.py: a gevent program (monkey-patched threading): threading names
// no OS thread, the main thread is shown with the kernel's name for it.
const geventScript = `
from gevent import monkey
monkey.patch_all()
import os, sys, threading, time


def green():
    while True:
        time.sleep(0.05)


threading.Thread(target=green, name="green").start()
sys.stdout.write("READY pid=%d\n" % os.getpid())
sys.stdout.flush()
while True:
    time.sleep(0.05)
`

// TestStacksGeventMainThread: gevent's main thread is shown with the
// kernel's name (comm), the same in the JSON and the text, not "?".
func TestStacksGeventMainThread(t *testing.T) {
	forLabels(t, []string{"3.11-debian"}, func(t *testing.T, in testenv.Interp) {
		if err := in.Command("-c", "import gevent").Run(); err != nil {
			testenv.Skipf(t, "gevent is not installed for %s (Debian: python3-gevent): %v", in.Label, err)
		}
		tg := testenv.Start(t, in, geventScript)
		for _, mode := range [][]string{nil, {"--nonblocking"}} {
			d := stacksJSON(t, tg.PID, mode...)
			if len(d.Threads) != 1 || !d.Threads[0].Main || d.Threads[0].TID != tg.PID {
				t.Fatalf("%v: threads %+v", mode, d.Threads)
			}
			if got, want := d.Threads[0].Name, comm(tg.PID, tg.PID); got != want || want == "" {
				t.Errorf("%v: main thread named %q, want the kernel's %q", mode, got, want)
			}
			textAgrees(t, tg.PID, d, mode...)
		}
		healthy(t, tg)
	})
}
