package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxScanned bounds the processes PIDs lists.
const maxScanned = 1 << 20

// maxChildren bounds the children Children returns.
const maxChildren = 256

// Children returns the PIDs of the process's children, from its threads'
// /proc/PID/task/TID/children files: nil where the kernel does not build
// them (Descendants works everywhere, by reading every process's stat).
func (p Proc) Children() []int {
	tids, err := p.TaskIDs()
	if err != nil {
		return nil
	}
	var out []int
	for _, tid := range tids {
		b, err := p.readFile("task/" + strconv.Itoa(tid) + "/children")
		if err != nil {
			return out
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && n > 0 && len(out) < maxChildren {
				out = append(out, n)
			}
		}
	}
	return out
}

// Descendants returns the PIDs of pid's children, their children and so
// on, found from the parent PIDs in /proc/*/stat (the kernel's
// /proc/PID/task/TID/children is not always built in). Processes that
// end during the scan are left out.
func Descendants(pid int) ([]int, error) {
	pids, err := PIDs()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, p := range pids {
		st, err := New(p).Stat()
		if err != nil {
			continue
		}
		children[st.PPid] = append(children[st.PPid], p)
	}
	var out []int
	seen := map[int]bool{pid: true}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out, nil
}

// KillChild sends SIGKILL to p if it is still the child of ppid that
// started at startTime (Stat.StartTime): through a pidfd, opened before
// that check, so that a PID reused meanwhile is never signalled.
func (p Proc) KillChild(ppid int, startTime uint64) error {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		return fmt.Errorf("process %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	st, err := p.Stat()
	if err != nil {
		return err
	}
	if st.PPid != ppid || st.StartTime != startTime {
		return fmt.Errorf("process %d is no longer the child of %d it was: %w", p.PID, ppid, os.ErrNotExist)
	}
	return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}
