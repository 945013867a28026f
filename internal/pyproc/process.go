// Package pyproc finds out, without stopping or running anything in it,
// what a process is: its identity, threads and namespaces, and the
// CPython interpreter it holds (file, version, load bias, symbols).
package pyproc

import (
	"os"
	"path"
	"sort"
	"strconv"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
)

// Thread is one thread of a process.
type Thread struct {
	TID   int    // in our PID namespace
	NSTID int    // in the process's own PID namespace
	Comm  string // thread name
	State byte   // kernel state letter ('R', 'S', ...)
}

// Process holds the facts `pyglass info` shows.
type Process struct {
	PID int
	// NSPID is the PID inside the process's own PID namespace (equal to
	// PID when it shares ours).
	NSPID   int
	PPID    int
	UID     int // real user id
	EUID    int // effective user id
	Cmdline []string
	// Exe is the main program as the target sees it.
	Exe       string
	State     byte
	StateName string
	Zombie    bool
	Stopped   bool // stopped by a signal or a tracer
	TracerPID int  // 0 when not traced
	// StartTime (clock ticks after boot) identifies the process with PID.
	StartTime uint64
	// OtherMountNS and OtherPIDNS are set when the process is in another
	// mount or PID namespace than pyglass (a container).
	OtherMountNS bool
	OtherPIDNS   bool
	// Python is the interpreter, or nil when none was found.
	Python *Python
	// nestedPIDNS: the process is in a PID namespace below pyglass's
	// (its threads have ids of their own there).
	nestedPIDNS bool
}

// User returns the name of the real user id as the target knows it (read
// when asked: a command that does not print it does not read
// /etc/passwd).
func (pr *Process) User() string {
	return procfs.New(pr.PID).UserName(pr.UID)
}

// Threads lists the process's threads as /proc shows them now (read when
// asked: a stacks read lists them itself, with the system calls they
// block in).
func (pr *Process) Threads() ([]Thread, error) {
	return threads(procfs.New(pr.PID), pr.nestedPIDNS)
}

// Inspect gathers the facts about process pid and finds its interpreter.
// It returns ErrNoProcess or ErrPermission (as *Error) with a nil Process
// when the process cannot be read at all. For a zombie, a process without
// Python or with an unsupported one it returns the Process (Python nil,
// or set for ErrUnsupportedVersion) together with an error matching
// ErrZombie, ErrNotPython or ErrUnsupportedVersion.
func Inspect(pid int) (*Process, error) {
	p := procfs.New(pid)
	st, err := p.Status()
	if err != nil {
		return nil, classify(pid, "reading status", err)
	}
	stat, err := p.Stat()
	if err != nil {
		return nil, classify(pid, "reading stat", err)
	}
	// The state from the same read as the tracer (status), so that the
	// two agree: stat's may be from after another tracer stopped the
	// process. stat's when status has none.
	state := st.State
	if state == 0 {
		state = stat.State
	}
	pr := &Process{
		PID:         pid,
		NSPID:       st.InnerPID(),
		PPID:        st.PPid,
		UID:         st.RealUID(),
		EUID:        st.EffectiveUID(),
		State:       state,
		StateName:   st.StateName,
		Zombie:      procfs.IsZombie(state),
		Stopped:     procfs.IsStopped(state),
		TracerPID:   st.TracerPid,
		StartTime:   stat.StartTime,
		nestedPIDNS: len(st.NSpid) > 1,
	}
	if pr.Cmdline, err = p.Cmdline(); err != nil {
		return nil, classify(pid, "reading command line", err)
	}
	// exe is unreadable for zombies and, without privileges, for other
	// users' processes: leave it empty then.
	if exe, err := p.Exe(); err == nil {
		pr.Exe = p.TargetPath(exe)
	}
	if same, err := p.SameNamespace(procfs.NSMount); err == nil {
		pr.OtherMountNS = !same
	}
	if same, err := p.SameNamespace(procfs.NSPID); err == nil {
		pr.OtherPIDNS = !same
	}
	if pr.Zombie {
		return pr, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrZombie, Detail: "it has exited and awaits its parent (PID " + strconv.Itoa(pr.PPID) + ")",
			Hint: "nothing is left to inspect"}
	}
	pr.Python, err = findPython(p, &imageCache{})
	return pr, err
}

// threads lists the threads; with nested PID namespaces it reads each
// thread's NSpid to learn its id inside the namespace.
func threads(p procfs.Proc, nested bool) ([]Thread, error) {
	ts, err := p.Tasks()
	if err != nil {
		return nil, err
	}
	out := make([]Thread, 0, len(ts))
	for _, t := range ts {
		th := Thread{TID: t.TID, NSTID: t.TID, Comm: t.Comm, State: t.State}
		if nested {
			if st, err := p.TaskStatus(t.TID); err == nil {
				th.NSTID = st.InnerPID()
			}
		}
		out = append(out, th)
	}
	return out, nil
}

// Summary is one line of `pyglass ps`.
type Summary struct {
	PID     int
	PPID    int // the parent's PID (in pyglass's PID namespace; 0 when outside it)
	UID     int
	User    string
	Version Version
	// VersionKnown is false when the version could not be read.
	VersionKnown bool
	Shared       bool
	Path         string // interpreter file, as the target sees it
	Cmdline      []string
}

// List returns every Python process on the machine that we may read,
// sorted by PID. Processes that vanish or cannot be read are skipped
// quietly. Only the main program and mapped libpython files are opened,
// each file once.
func List() ([]Summary, error) {
	pids, err := procfs.PIDs()
	if err != nil {
		return nil, err
	}
	cache := &imageCache{}
	self := os.Getpid()
	var out []Summary
	for _, pid := range pids {
		if pid == self {
			continue
		}
		if s, ok := summarize(procfs.New(pid), cache); ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// summarize reads the interpreter of one process for List.
func summarize(p procfs.Proc, cache *imageCache) (Summary, bool) {
	ms, err := p.Maps()
	if err != nil || len(ms) == 0 {
		return Summary{}, false
	}
	files := groupFiles(ms)
	exeIno := exeInode(p)
	var found *mappedFile
	var img *image
	for pass := 0; pass < 2 && found == nil; pass++ {
		for _, f := range files {
			lib := isLibpython(path.Base(f.path))
			if (pass == 0 && !lib) || (pass == 1 && (lib || f.key.inode != exeIno)) {
				continue
			}
			i, err := cache.get(p, f.maps[0])
			if err == nil && i.interp {
				found, img = f, i
				break
			}
		}
	}
	if found == nil {
		return Summary{}, false
	}
	st, err := p.Status()
	if err != nil || procfs.IsZombie(st.State) {
		return Summary{}, false
	}
	cmd, err := p.Cmdline()
	if err != nil {
		return Summary{}, false
	}
	return Summary{
		PID:          p.PID,
		PPID:         st.PPid,
		UID:          st.RealUID(),
		User:         p.UserName(st.RealUID()),
		Version:      img.version,
		VersionKnown: img.verErr == nil,
		Shared:       found.key.inode != exeIno,
		Path:         p.TargetPath(found.path),
		Cmdline:      cmd,
	}, true
}
