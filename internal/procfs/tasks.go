package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// maxTasks bounds the number of threads listed.
const maxTasks = 1 << 17

// Task is one thread of a process.
type Task struct {
	TID   int
	State byte
	Comm  string
}

// TaskIDs lists the thread ids in /proc/PID/task, sorted.
func (p Proc) TaskIDs() ([]int, error) {
	names, err := readDirNames(p.Path("task"), maxTasks+1)
	if err != nil {
		return nil, p.wrap("task", err)
	}
	if len(names) > maxTasks {
		return nil, fmt.Errorf("listing %s: more than %d threads: %w", p.Path("task"), maxTasks, ErrParse)
	}
	tids := make([]int, 0, len(names))
	for _, n := range names {
		if t, err := strconv.Atoi(n); err == nil {
			tids = append(tids, t)
		}
	}
	sort.Ints(tids)
	return tids, nil
}

// Tasks lists the threads with their state and name. A thread that exits
// while being listed is left out.
func (p Proc) Tasks() ([]Task, error) {
	tids, err := p.TaskIDs()
	if err != nil {
		return nil, err
	}
	out := make([]Task, 0, len(tids))
	for _, tid := range tids {
		st, err := p.TaskStat(tid)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNoProcess) {
				continue
			}
			return nil, fmt.Errorf("listing threads: %w", err)
		}
		out = append(out, Task{TID: tid, State: st.State, Comm: st.Comm})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("listing threads of %d: %w", p.PID, ErrNoProcess)
	}
	return out, nil
}

// Syscall is the content of /proc/PID/task/TID/syscall.
type Syscall struct {
	// Running is set when the thread was running (no syscall state).
	Running bool
	// InSyscall is set when the thread is blocked in system call Nr.
	// When false and not Running, the thread is blocked outside any
	// system call (e.g. stopped in user space).
	InSyscall bool
	Nr        int64
	Args      [6]uint64
	SP, PC    uint64
}

// TaskSyscall reads /proc/PID/task/TID/syscall. Reading it requires
// ptrace access to the process.
func (p Proc) TaskSyscall(tid int) (*Syscall, error) {
	name := "task/" + strconv.Itoa(tid) + "/syscall"
	b, err := p.readFile(name)
	if err != nil {
		return nil, err
	}
	s, err := ParseSyscall(string(b))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", p.Path(name), err)
	}
	return s, nil
}

// ParseSyscall parses the format of /proc/PID/task/TID/syscall.
func ParseSyscall(text string) (*Syscall, error) {
	f := strings.Fields(text)
	if len(f) == 1 && f[0] == "running" {
		return &Syscall{Running: true}, nil
	}
	if len(f) != 3 && len(f) != 9 {
		return nil, fmt.Errorf("syscall %q: %w", text, ErrParse)
	}
	s := &Syscall{}
	var err error
	if s.Nr, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return nil, fmt.Errorf("syscall number %q: %w", f[0], ErrParse)
	}
	hex := func(v string) (uint64, error) {
		u, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("syscall value %q: %w", v, ErrParse)
		}
		return u, nil
	}
	if len(f) == 9 {
		s.InSyscall = true
		for i := 0; i < 6; i++ {
			if s.Args[i], err = hex(f[1+i]); err != nil {
				return nil, err
			}
		}
	}
	if s.SP, err = hex(f[len(f)-2]); err != nil {
		return nil, err
	}
	if s.PC, err = hex(f[len(f)-1]); err != nil {
		return nil, err
	}
	return s, nil
}
