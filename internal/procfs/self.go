package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pyglass/pyglass/internal/rootfs"
)

// Comm returns the kernel's name of the process (or, for a thread id, of
// that thread): /proc/PID/comm without its newline, at most 15 bytes.
func (p Proc) Comm() (string, error) {
	b, err := p.readFile("comm")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// HasTask reports whether tid is a thread of the process now.
func (p Proc) HasTask(tid int) bool {
	_, err := os.Stat(p.Path("task/" + strconv.Itoa(tid)))
	return err == nil
}

// OpenRoot opens the process's root directory (/proc/PID/root: its root
// in its own mount namespace) for paths resolved inside it.
func (p Proc) OpenRoot() (*rootfs.Root, error) {
	r, err := rootfs.OpenDir(p.Path("root"))
	if err != nil {
		return nil, p.rootErr(err)
	}
	return r, nil
}

// PIDs lists the processes under /proc (at most maxScanned), unsorted.
func PIDs() ([]int, error) {
	names, err := readDirNames("/proc", maxScanned+1)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	out := make([]int, 0, len(names))
	for i, n := range names {
		if i >= maxScanned {
			break
		}
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out, nil
}

// PtraceScope returns kernel.yama.ptrace_scope (0 classic ptrace, 1 only
// descendants, 2 only CAP_SYS_PTRACE, 3 none); false when Yama is absent.
func PtraceScope() (int, bool) {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}
