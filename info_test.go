package pyglass

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestInfoOnTarget: Info's threads, read through the live target, are
// /proc's (ids, names, states: "stopped" while the process is stopped,
// as the kernel's letter says), with their Python names; a core of the
// same process, read through its target, counts as many threads and
// names the same interpreter (its path as pyglass sees it: Dump names
// the files so).
func TestInfoOnTarget(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, p := startSleeper(t, in)
		if err := syscall.Kill(tg.PID, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		// Every thread stops in its own time (a group stop).
		testenv.WaitUntil(t, 5*time.Second, "every thread of the target stopped", func() bool {
			tasks, err := procfs.New(tg.PID).Tasks()
			if err != nil || len(tasks) == 0 {
				return false
			}
			for _, ts := range tasks {
				if ts.State != 'T' {
					return false
				}
			}
			return true
		})
		info := p.Info()
		syscall.Kill(tg.PID, syscall.SIGCONT)
		tasks, err := procfs.New(tg.PID).Tasks()
		if err != nil {
			t.Fatal(err)
		}
		if info.State != "stopped" || info.CanExec || len(info.Threads) != len(tasks) || len(tasks) != 3 {
			t.Fatalf("info of a stopped process: %+v (tasks %+v)", info, tasks)
		}
		names := map[string]bool{}
		for i, th := range info.Threads {
			if th.TID != tasks[i].TID || th.Comm != tasks[i].Comm || th.State != "stopped" {
				t.Errorf("thread %d: %+v, /proc says %+v", i, th, tasks[i])
			}
			names[th.Name] = true
		}
		if !names["MainThread"] || !names["worker-1"] {
			t.Errorf("Python names: %+v", info.Threads)
		}

		c := dumpCore(t, p)
		ci := c.Info()
		if ci.PID != tg.PID || ci.Threads != len(info.Threads) || c.Python().Version != info.Python.Version || c.Python().Shared != info.Python.Shared {
			t.Errorf("core: %+v %+v, live: %+v", ci, c.Python(), info)
		}
	})
}

// dumpCore writes a core of p (Dump) and opens it; it is closed when the
// test ends.
func dumpCore(t *testing.T, p *Process) *Core {
	t.Helper()
	path := filepath.Join(t.TempDir(), "core")
	if _, err := p.Dump(path); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCore(path, CoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
