package procfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Stat holds the fields of /proc/PID/stat that pyglass uses.
type Stat struct {
	Comm  string
	State byte
	PPid  int
	// Flags are the kernel's PF_* flags of the task.
	Flags uint64
	// UTime and STime are the CPU time spent in user and kernel mode, in
	// clock ticks (USER_HZ, 100 a second on Linux).
	UTime, STime uint64
	// StartTime is when the process started, in clock ticks after boot.
	// With the PID it identifies a process across PID reuse.
	StartTime uint64
	// Processor is the CPU the task last ran on, -1 when not given.
	Processor int
}

// Stat reads /proc/PID/stat.
func (p Proc) Stat() (*Stat, error) { return p.stat("stat") }

// TaskStat reads /proc/PID/task/TID/stat.
func (p Proc) TaskStat(tid int) (*Stat, error) {
	return p.stat("task/" + strconv.Itoa(tid) + "/stat")
}

func (p Proc) stat(name string) (*Stat, error) {
	b, err := p.readFile(name)
	if err != nil {
		return nil, err
	}
	s, err := ParseStat(b)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", p.Path(name), err)
	}
	return s, nil
}

// ParseStat parses the format of /proc/PID/stat. The command name may
// contain spaces and parentheses: it ends at the last ')'.
func ParseStat(b []byte) (*Stat, error) {
	i := bytes.IndexByte(b, '(')
	j := bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return nil, fmt.Errorf("no command name: %w", ErrParse)
	}
	s := &Stat{Comm: string(b[i+1 : j])}
	f := strings.Fields(string(b[j+1:]))
	// Fields after the name: state(3) ppid(4) ... starttime(22).
	if len(f) < 20 || len(f[0]) != 1 {
		return nil, fmt.Errorf("%d fields after the name: %w", len(f), ErrParse)
	}
	s.State = f[0][0]
	var err error
	if s.PPid, err = strconv.Atoi(f[1]); err != nil {
		return nil, fmt.Errorf("ppid %q: %w", f[1], ErrParse)
	}
	if s.Flags, err = strconv.ParseUint(f[6], 10, 64); err != nil {
		return nil, fmt.Errorf("flags %q: %w", f[6], ErrParse)
	}
	if s.UTime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return nil, fmt.Errorf("utime %q: %w", f[11], ErrParse)
	}
	if s.STime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return nil, fmt.Errorf("stime %q: %w", f[12], ErrParse)
	}
	if s.StartTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return nil, fmt.Errorf("starttime %q: %w", f[19], ErrParse)
	}
	s.Processor = -1
	if len(f) > 36 { // processor(39)
		if n, err := strconv.Atoi(f[36]); err == nil && n >= 0 {
			s.Processor = n
		}
	}
	return s, nil
}

// Kernel task flags (include/linux/sched.h) found in Stat.Flags.
const (
	FlagExiting    = 0x00000004 // PF_EXITING: the task is being torn down
	FlagKernThread = 0x00200000 // PF_KTHREAD: a kernel thread
)

// IsZombie reports whether a state letter means the process has exited
// and awaits its parent ('Z') or is being torn down ('X').
func IsZombie(state byte) bool { return state == 'Z' || state == 'X' || state == 'x' }

// IsStopped reports whether a state letter means stopped by a signal
// ('T') or by a tracer ('t').
func IsStopped(state byte) bool { return state == 'T' || state == 't' }

// StateFile is a thread's /proc/PID/task/TID/stat kept open, to read its
// scheduler state again with one system call (a sampler does so for
// every running thread at every sample).
type StateFile struct {
	f   *os.File
	fd  int // f's, read with pread directly
	buf [512]byte
}

// OpenTaskState opens /proc/PID/task/TID/stat for State.
func (p Proc) OpenTaskState(tid int) (*StateFile, error) {
	return p.openStat("task/" + strconv.Itoa(tid) + "/stat")
}

func (p Proc) openStat(name string) (*StateFile, error) {
	f, err := os.Open(p.Path(name))
	if err != nil {
		return nil, p.wrap(name, err)
	}
	return &StateFile{f: f, fd: int(f.Fd())}, nil
}

// State reads the thread's state letter ('R', 'S', 'D', ...) now.
func (s *StateFile) State() (byte, error) {
	b, err := s.fields()
	if err != nil {
		return 0, err
	}
	if len(b) < 2 {
		return 0, fmt.Errorf("no state in %s: %w", s.f.Name(), ErrParse)
	}
	return b[1], nil
}

func (s *StateFile) pread() (int, error) {
	for {
		n, err := unix.Pread(s.fd, s.buf[:], 0)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// fields reads the file again and returns what follows the command name
// (" S 1 ...").
func (s *StateFile) fields() ([]byte, error) {
	// One pread: os.File.ReadAt would read again after a short read to
	// fill the buffer (a second system call, which returns 0).
	n, err := s.pread()
	if err != nil {
		return nil, &os.PathError{Op: "pread", Path: s.f.Name(), Err: err}
	}
	if n == 0 {
		return nil, &os.PathError{Op: "pread", Path: s.f.Name(), Err: io.EOF}
	}
	b := s.buf[:n]
	j := bytes.LastIndexByte(b, ')')
	if j < 0 {
		return nil, fmt.Errorf("no command name in %s: %w", s.f.Name(), ErrParse)
	}
	return b[j+1:], nil
}

// OpenStat opens /proc/PID/stat kept open, for NumThreads (and State).
func (p Proc) OpenStat() (*StateFile, error) { return p.openStat("stat") }

// NumThreads reads the process's number of threads (num_threads, the
// 20th field of a file of OpenStat) now, with one system call and no
// allocation.
func (s *StateFile) NumThreads() (int, error) {
	b, err := s.fields()
	if err != nil {
		return 0, err
	}
	// Fields after the name, one space apart: state(3) ... num_threads(20).
	field, v, digits := 2, 0, 0
	for _, c := range b {
		if c == ' ' {
			if field == 20 {
				break
			}
			field++
			continue
		}
		if field == 20 {
			if c < '0' || c > '9' || digits >= 9 {
				return 0, fmt.Errorf("num_threads in %s: %w", s.f.Name(), ErrParse)
			}
			v, digits = v*10+int(c-'0'), digits+1
		}
	}
	if field != 20 || digits == 0 {
		return 0, fmt.Errorf("no num_threads in %s: %w", s.f.Name(), ErrParse)
	}
	return v, nil
}

// Close closes the file.
func (s *StateFile) Close() error { return s.f.Close() }
