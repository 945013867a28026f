package ptrace

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Tasks lists the thread ids of pid (/proc/PID/task), sorted.
func Tasks(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("listing threads of %d: %w", pid, err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	return tids, nil
}

// TaskState returns the one-letter scheduler state of a thread (R, S, D,
// T for stopped, t for traced, Z, ...) from /proc/PID/task/TID/stat.
func TaskState(pid, tid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, fmt.Errorf("reading state of thread %d: %w", tid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("parsing state of thread %d: malformed stat", tid)
	}
	return b[i+2], nil
}

// TaskSyscall describes what /proc/PID/task/TID/syscall says about a thread.
type TaskSyscall struct {
	Running bool   // the thread is on a CPU (no syscall information)
	Nr      int    // syscall number, -1 when blocked outside a syscall
	SP, PC  uint64 // user stack pointer and program counter
}

// ReadTaskSyscall reads /proc/PID/task/TID/syscall.
func ReadTaskSyscall(pid, tid int) (TaskSyscall, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	if err != nil {
		return TaskSyscall{}, fmt.Errorf("reading syscall of thread %d: %w", tid, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return TaskSyscall{}, fmt.Errorf("parsing syscall of thread %d: empty", tid)
	}
	if f[0] == "running" {
		return TaskSyscall{Running: true, Nr: -1}, nil
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return TaskSyscall{}, fmt.Errorf("parsing syscall of thread %d: %w", tid, err)
	}
	ts := TaskSyscall{Nr: nr}
	if len(f) >= 3 {
		ts.SP, _ = strconv.ParseUint(strings.TrimPrefix(f[len(f)-2], "0x"), 16, 64)
		ts.PC, _ = strconv.ParseUint(strings.TrimPrefix(f[len(f)-1], "0x"), 16, 64)
	}
	return ts, nil
}

// StatusField returns the value of one "Name:\tvalue" line of
// /proc/PID/status (or of a task's status when tid != 0), "" when absent.
func StatusField(pid, tid int, name string) (string, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	if tid != 0 {
		path = fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return strings.TrimSpace(v), nil
		}
	}
	return "", nil
}

// TracerPid returns the pid tracing pid, 0 when none.
func TracerPid(pid int) (int, error) {
	v, err := StatusField(pid, 0, "TracerPid")
	if err != nil {
		return 0, err
	}
	if v == "" {
		return 0, errors.New("reading TracerPid: field absent")
	}
	return strconv.Atoi(v)
}
