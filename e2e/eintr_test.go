package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// TestPausesCauseNoEINTR: every command that pauses the target (stacks,
// stacks --native, locks, tasks, record --blocking, dump) leaves a thread
// blocked in epoll_wait (called through ctypes, so the errno is the
// kernel's) waiting: a ptrace stop makes that call fail with EINTR, which
// pyglass must undo; on 2.7 Python's own epoll.poll too, which raises
// IOError there.
func TestPausesCauseNoEINTR(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "eintr_waiter.py"))
		count := func() map[string]int64 {
			tg.Send("count")
			return fields(t, tg.WaitLine("EINTR ", 5*time.Second))
		}
		c0 := count()
		pid := strconv.Itoa(tg.PID)
		dir := t.TempDir()
		cmds := [][]string{
			{"stacks", pid},
			{"stacks", "--native", pid},
			{"locks", pid},
			{"record", "--blocking", "--rate", "200", "--duration", "1s", "-o", filepath.Join(dir, "p.txt"), pid},
		}
		if in.AtLeast(3, 7) {
			cmds = append(cmds, []string{"tasks", pid})
		}
		for i := 0; i < 3; i++ {
			for _, c := range cmds {
				want(t, run(t, nil, c...), 0)
			}
			core := filepath.Join(dir, "core"+strconv.Itoa(i))
			want(t, run(t, nil, "dump", "-o", core, pid), 0)
			if i == 0 {
				// (never overwritten: a one-line refusal, the target untouched)
				r := run(t, nil, "dump", "-o", core, pid)
				want(t, r, 2)
				oneLineErr(t, r, "exists")
			}
		}
		c1 := count()
		t.Logf("epoll_wait calls: %d before, %d after; EINTR %d", c0["loops"], c1["loops"], c1["n"])
		if c1["n"] != 0 {
			t.Errorf("%d system calls of the target failed with EINTR after %d pyglass commands that pause it", c1["n"], 3*(len(cmds)+1))
		}
		healthy(t, tg)
	})
}

// TestExecCausesNoEINTR: when every thread of the target waits in a call
// that a ptrace stop ends with EINTR (libc's epoll_wait through ctypes,
// in the main thread and another, no timeout), `pyglass exec` has to
// borrow one of them on Python 3; when the thread is given back, the call
// runs again instead of failing with EINTR (it failed once per exec). On
// 2.7, which does not retry such calls, exec does not borrow them: it
// gives up after --timeout (exit 5) and says why. Either way no call of
// the target fails.
func TestExecCausesNoEINTR(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "eintr_waiter.py"), testenv.Args("all"))
		count := func() map[string]int64 {
			tg.Send("count")
			return fields(t, tg.WaitLine("EINTR ", 5*time.Second))
		}
		c0 := count()
		pid := strconv.Itoa(tg.PID)
		for i := 0; i < 5; i++ {
			if in.Major == 2 {
				r := run(t, nil, "exec", pid, "-c", "pass", "--timeout", "1s")
				want(t, r, 5)
				if !strings.Contains(r.Stderr, "no thread safe to borrow") {
					t.Errorf("exec's error does not say why: %q", r.Stderr)
				}
				continue
			}
			want(t, run(t, nil, "exec", pid, "-c", "pass"), 0)
		}
		c1 := count()
		t.Logf("epoll_wait calls: %d before, %d after; EINTR %d", c0["loops"], c1["loops"], c1["n"])
		if c1["n"] != 0 {
			t.Errorf("%d system calls of the target failed with EINTR after 5 runs of pyglass exec", c1["n"])
		}
		healthy(t, tg)
	})
}
