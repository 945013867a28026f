package procfs

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func monotonicNow(t *testing.T) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// TestMonotonic: the clock of a process in a time namespace whose
// monotonic clock is 100,000 s ahead (unshare --time --monotonic) is read
// 100,000 s ahead of ours; our own is ours.
func TestMonotonic(t *testing.T) {
	before := monotonicNow(t)
	self, err := Self().Monotonic()
	if err != nil || self < before || self > monotonicNow(t) {
		t.Fatalf("own clock %v (err %v), ours %v", self, err, before)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("unshare (util-linux) is missing: %v", err)
	}
	const ahead = 100000 * time.Second
	cmd := exec.Command("unshare", "--fork", "--time", "--monotonic", "100000", "sh", "-c", "echo $$; exec cat")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Wait()
		t.Skipf("no time namespace here (unshare --time: %v %s)", err, strings.TrimSpace(stderr.String()))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("pid line %q", line)
	}
	lo := monotonicNow(t) + ahead
	got, err := New(pid).Monotonic()
	hi := monotonicNow(t) + ahead
	if err != nil || got < lo || got > hi {
		t.Errorf("clock of a process 100,000 s ahead: %v (err %v), want between %v and %v", got, err, lo, hi)
	}
	if _, err := parseMonotonicOffset([]byte("monotonic x 0\n")); err == nil {
		t.Error("a garbled timens_offsets parsed")
	}
}
