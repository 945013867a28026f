package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// WaitUntil calls cond every few milliseconds until it returns true and
// fails the test, naming what, when it has not after timeout. Tests use it
// instead of a fixed sleep before an assertion: the wait ends as soon as
// the condition holds and a loaded machine only makes it longer.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := TryWaitUntil(timeout, cond); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}

// TryWaitUntil is WaitUntil returning an error instead of failing a test.
func TryWaitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not so after %v", timeout)
		}
		time.Sleep(pause)
		if pause < 20*time.Millisecond {
			pause *= 2
		}
	}
	return nil
}

// TempDir creates a directory, removed when the test ends, that processes
// run with in can reach: under the chroot of a chroot interpreter. It
// returns its path as seen from the host and as the interpreter sees it.
// The directory is mode 0755.
func TempDir(t testing.TB, in Interp) (host, inside string) {
	t.Helper()
	base := os.TempDir()
	if in.Chroot != "" {
		base = filepath.Join(in.Chroot, base)
	}
	host, err := os.MkdirTemp(base, "pyglass-test-")
	if err != nil {
		t.Fatalf("creating a directory for %s: %v", in.Label, err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	if err := os.Chmod(host, 0o755); err != nil {
		t.Fatalf("making %s readable: %v", host, err)
	}
	return host, in.Inside(host)
}

// Inside returns the path under which the interpreter sees the host path
// p: p itself, or p relative to the chroot of a chroot interpreter.
func (in Interp) Inside(p string) string {
	if in.Chroot == "" {
		return p
	}
	return "/" + strings.TrimPrefix(strings.TrimPrefix(p, in.Chroot), "/")
}

// Wait waits up to timeout for the process to end and returns whether it
// did.
func (tg *Target) Wait(timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tg.mu.Lock()
		done, ch := tg.done, tg.changed
		tg.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// CloseStdin closes the process's stdin: its reads return end of file
// from then on (Send no longer works).
func (tg *Target) CloseStdin() error { return tg.stdin.Close() }

// Tasks returns the thread ids of process pid in increasing order (none
// when it is gone).
func Tasks(pid int) []int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// BlockedIn returns the number of the system call thread tid of process
// pid is blocked in, or -1 when it is running (or gone).
func BlockedIn(pid, tid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return -1 // "running"
	}
	return nr
}

// CPUTime returns how long thread tid of process pid has run on a CPU
// (/proc's schedstat), or -1 when it is unknown.
func CPUTime(pid, tid int) time.Duration { return schedstat(pid, tid, 0) }

// RunDelay returns how long thread tid of process pid has waited for a
// CPU while runnable (/proc's schedstat, its second field), or -1 when
// it is unknown.
func RunDelay(pid, tid int) time.Duration { return schedstat(pid, tid, 1) }

// schedstat returns field i (nanoseconds) of a thread's
// /proc/PID/task/TID/schedstat, or -1 when it is unknown.
func schedstat(pid, tid, i int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, tid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) <= i {
		return -1
	}
	ns, err := strconv.ParseInt(f[i], 10, 64)
	if err != nil {
		return -1
	}
	return time.Duration(ns)
}

// AllAsleep reports whether process pid has n threads, each blocked in a
// system call other than a futex wait: sleeping, selecting, reading,
// accepting, not starting up nor waiting for a lock (or the GIL).
func AllAsleep(pid, n int) bool {
	tids := Tasks(pid)
	if len(tids) != n {
		return false
	}
	for _, tid := range tids {
		if !Asleep(pid, tid) {
			return false
		}
	}
	return true
}

// Asleep reports whether thread tid of process pid is blocked in a
// system call other than a futex wait (see AllAsleep).
func Asleep(pid, tid int) bool {
	nr := BlockedIn(pid, tid)
	return nr >= 0 && nr != syscall.SYS_FUTEX
}
