package live

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// Snapshot is a running process as a target.Target: its memory (any
// reader of it, normally a Process), its threads as /proc lists them or,
// once Hold is given a freeze, exactly the threads the freeze holds with
// what their registers say, its file mappings from /proc/PID/maps, its
// files opened as the target sees them (internal/procfs).
type Snapshot struct {
	pid     int
	mem     memory.Reader
	pr      procfs.Proc
	inNS    bool // the target is in another PID namespace: its ids differ
	threads []target.Thread
	frozen  *ptrace.Frozen
	regs    map[int][]uint64 // the held threads' registers, read at first need
	maps    []target.Mapping
	byPath  map[string]procfs.Mapping
	mapsErr error
}

var _ target.Target = (*Snapshot)(nil)

// maxThreads bounds how many threads a snapshot looks at.
const maxThreads = 4096

// NewSnapshot lists pid's threads from /proc: their ids (inNS: the ids
// the target sees too), names, states and, when withSyscall, the system
// call each is blocked in. The error is that of listing them (the
// process is gone, or /proc cannot be read).
func NewSnapshot(pid int, mem memory.Reader, inNS, withSyscall bool) (*Snapshot, error) {
	s := &Snapshot{pid: pid, mem: mem, pr: procfs.New(pid), inNS: inNS}
	tids, err := s.pr.TaskIDs()
	if err != nil {
		return nil, err
	}
	for i, tid := range tids {
		if i >= maxThreads {
			break
		}
		s.threads = append(s.threads, s.task(tid, withSyscall))
	}
	return s, nil
}

// SnapshotOf is the snapshot of pid with threads known otherwise (when
// its thread list cannot be read).
func SnapshotOf(pid int, mem memory.Reader, threads []target.Thread) *Snapshot {
	return &Snapshot{pid: pid, mem: mem, pr: procfs.New(pid), threads: threads}
}

// task reads the kernel's view of thread tid.
func (s *Snapshot) task(tid int, withSyscall bool) target.Thread {
	th := target.Thread{TID: tid, NSTID: tid}
	var state byte
	if st, err := s.pr.TaskStat(tid); err == nil {
		state, th.Name = st.State, st.Comm
	}
	var sc *procfs.Syscall
	if withSyscall {
		sc, _ = s.pr.TaskSyscall(tid)
	}
	th.State = procState(state, sc)
	th.State.Letter = state
	if s.inNS {
		if st, err := s.pr.TaskStatus(tid); err == nil {
			th.NSTID = st.InnerPID()
		}
	}
	return th
}

// procState is a thread's state from /proc: its state letter and, when
// read, its system call.
func procState(state byte, sc *procfs.Syscall) target.State {
	switch state {
	case 'R':
		return target.State{Kind: target.Running}
	case 'T', 't':
		return target.State{Kind: target.Stopped}
	case 0:
		return target.State{}
	}
	if sc == nil || !sc.InSyscall {
		return target.State{Kind: target.Sleeping}
	}
	return target.State{Kind: target.InSyscall, Syscall: sc.Nr, Args: sc.Args}
}

// Hold makes the snapshot's threads those f holds (a thread that started
// after /proc was read is added, one that ended is dropped), each with
// its registers' view: the state its memory is read in. Registers can be
// read until f is thawed.
func (s *Snapshot) Hold(f *ptrace.Frozen) {
	held := f.Inspect()
	known := make(map[int]target.Thread, len(s.threads))
	for _, t := range s.threads {
		known[t.TID] = t
	}
	threads := make([]target.Thread, 0, len(f.Tids))
	for _, tid := range f.Tids {
		th, ok := known[tid]
		if !ok {
			th = s.task(tid, false)
		}
		if h, ok := held[tid]; ok {
			th.TP = h.TP
			th.State = target.State{Kind: target.InSyscall, Syscall: h.Syscall, Args: h.Args, Frozen: true}
			switch {
			case h.Stopped:
				th.State.Kind = target.Stopped
			case h.Syscall < 0:
				th.State.Kind = target.Running
			}
		}
		threads = append(threads, th)
	}
	s.threads, s.frozen, s.regs = threads, f, nil
}

func (s *Snapshot) PID() int                 { return s.pid }
func (s *Snapshot) Memory() memory.Reader    { return s.mem }
func (s *Snapshot) Threads() []target.Thread { return s.threads }

// Machine is pyglass's own: a live target runs on this machine.
func (s *Snapshot) Machine() elf.Machine { return target.HostMachine() }

// Registers reads (once, for every held thread) the registers of the
// threads Hold was given, while they are held.
func (s *Snapshot) Registers(tid int) ([]uint64, bool) {
	if s.frozen == nil {
		return nil, false
	}
	if s.regs == nil {
		raw := s.frozen.RawRegs()
		s.regs = make(map[int][]uint64, len(raw))
		for t, b := range raw {
			words := make([]uint64, len(b)/8)
			for i := range words {
				words[i] = binary.LittleEndian.Uint64(b[8*i:])
			}
			s.regs[t] = words
		}
	}
	r, ok := s.regs[tid]
	return r, ok
}

// vdsoPath is the name /proc/PID/maps gives the vDSO.
const vdsoPath = "[vdso]"

// Mappings are the file mappings and the vDSO of /proc/PID/maps, read
// once, each file's build-id read from its notes (one open and a few
// small reads per file, at this first call).
func (s *Snapshot) Mappings() ([]target.Mapping, error) {
	if s.byPath != nil || s.mapsErr != nil {
		return s.maps, s.mapsErr
	}
	maps, err := s.pr.Maps()
	if err != nil {
		s.mapsErr = err
		return nil, err
	}
	s.byPath = map[string]procfs.Mapping{}
	names, ids := map[string]string{}, map[string]string{}
	for _, m := range maps {
		if !m.IsFile() && m.Path != vdsoPath {
			continue
		}
		if _, ok := s.byPath[m.Path]; !ok {
			s.byPath[m.Path] = m
			names[m.Path] = s.pr.TargetPath(m.Path)
			ids[m.Path] = s.buildID(m)
		}
		s.maps = append(s.maps, target.Mapping{Start: m.Start, End: m.End, Offset: m.Offset,
			Read: m.Perms.Read, Write: m.Perms.Write, Exec: m.Perms.Exec, Path: m.Path, TargetPath: names[m.Path], BuildID: ids[m.Path]})
	}
	return s.maps, nil
}

// buildID reads the build-id of the file of mapping m from its notes,
// the file opened as the target maps it; the vDSO's (it has no file) from
// its image in the target's memory, when the snapshot has a reader. ""
// when it cannot be read.
func (s *Snapshot) buildID(m procfs.Mapping) string {
	if !m.IsFile() {
		if s.mem == nil || m.End <= m.Start {
			return ""
		}
		return elfsym.BuildID(memory.Section(s.mem, m.Start, m.End-m.Start))
	}
	f, _, err := s.pr.OpenMapping(m)
	if err != nil {
		return ""
	}
	defer f.Close()
	return elfsym.BuildID(f)
}

// Auxv is what /proc/PID/auxv says of the program's and the loader's
// addresses (AT_PHDR, AT_BASE, AT_ENTRY).
func (s *Snapshot) Auxv() map[uint64]uint64 {
	out := map[uint64]uint64{}
	if a, err := s.pr.Auxv(); err == nil {
		const atPhdr, atBase, atEntry = 3, 7, 9
		for tag, v := range map[uint64]uint64{atPhdr: a.Phdr, atBase: a.Base, atEntry: a.Entry} {
			if v != 0 {
				out[tag] = v
			}
		}
	}
	return out
}

// OpenFile opens the file of a mapping as the target sees it
// (procfs.OpenMapping); the caller closes it.
func (s *Snapshot) OpenFile(path string) (io.ReaderAt, error) {
	if _, err := s.Mappings(); err != nil {
		return nil, err
	}
	m, ok := s.byPath[path]
	if !ok {
		return nil, fmt.Errorf("%s is not mapped", path)
	}
	f, _, err := s.pr.OpenMapping(m)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// OpenPath opens a file by its path inside the target's root; the caller
// closes it.
func (s *Snapshot) OpenPath(path string) (io.ReaderAt, error) {
	f, err := s.pr.OpenFile(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}
