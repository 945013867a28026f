// Package target is what pyglass's read-only reports (stacks, tasks,
// locks) read a process through, whether it is alive or a core file: its
// memory, its threads (ids, names, thread pointers, registers, the
// kernel's state), its mapped files and auxiliary vector, and how to open
// a mapped file. target/live implements it over a running process (a
// snapshot: the threads a freeze holds, or /proc's view without pausing),
// target/core over an ELF core file. Like the decoders, this package
// talks to no kernel interface.
package target

import (
	"debug/elf"
	"io"
	"runtime"

	"github.com/pyglass/pyglass/memory"
)

// Target is one process to read: alive (its threads paused or not) or
// dumped in a core file.
type Target interface {
	// PID is the process id: in pyglass's PID namespace for a live
	// process, the dumped one's for a core.
	PID() int
	// Memory reads the target's address space.
	Memory() memory.Reader
	// Machine is the architecture of the target's registers
	// (elf.EM_X86_64, elf.EM_AARCH64).
	Machine() elf.Machine
	// Threads are the target's threads, in the kernel's order; for a
	// paused process exactly the threads the pause holds.
	Threads() []Thread
	// Registers are the general registers of thread tid (Thread.TID) laid
	// out as in a core's NT_PRSTATUS (user_regs_struct on amd64,
	// user_pt_regs on arm64), one word each; false when unknown (a live
	// thread that is not paused).
	Registers(tid int) ([]uint64, bool)
	// Mappings are the target's file mappings (and its vDSO, for a live
	// process), in address order.
	Mappings() ([]Mapping, error)
	// Auxv is the auxiliary vector (AT_* tag → value); what is unknown is
	// missing.
	Auxv() map[uint64]uint64
	// OpenFile opens the mapped file of path (Mapping.Path) as the target
	// maps it: a live process's inside its root, a core's under the
	// sysroot (or --exe) after its build-id is checked. The caller closes
	// it when it is an io.Closer (a core keeps its files: it gives none).
	OpenFile(path string) (io.ReaderAt, error)
	// OpenPath opens a file of the target's filesystem by its path as the
	// target sees it (a separate debug file, a source file): resolved
	// inside a live process's root, under a core's sysroot.
	OpenPath(path string) (io.ReaderAt, error)
}

// Thread is one thread of a target.
type Thread struct {
	// TID is the thread's id in pyglass's PID namespace (a core's: as
	// dumped); NSTID is the id the target sees (what CPython's
	// native_thread_id holds), the same outside a PID namespace.
	TID, NSTID int
	// Name is the kernel's name for the thread (comm), "" when unknown.
	Name string
	// TP is the thread pointer (fs_base on amd64, tpidr_el0 on arm64), 0
	// when unknown.
	TP uint64
	// State is what the kernel says the thread was doing.
	State State
}

// StateKind is what a thread was doing.
type StateKind uint8

const (
	Unknown   StateKind = iota
	Running             // on a CPU or runnable, outside any system call
	Sleeping            // blocked, in no system call the view knows of
	Stopped             // stopped by a signal (job control) or a tracer other than pyglass
	InSyscall           // blocked in system call State.Syscall
)

// State is a thread's kernel state.
type State struct {
	Kind StateKind
	// Syscall and Args are the system call (this machine's numbers) and
	// its arguments, when Kind is InSyscall.
	Syscall int64
	Args    [6]uint64
	// Frozen is set when the state comes from the thread's registers
	// while it is paused (or from a core): the state its memory was read
	// in. Otherwise it is /proc's view of a running process.
	Frozen bool
	// Letter is the kernel's state letter as /proc gives it (R, S, D, T,
	// t, Z, X, I), 0 when unknown (a core, a held thread).
	Letter byte
}

// Mapping is one mapping of a file (or the vDSO).
type Mapping struct {
	Start, End, Offset uint64
	Read, Write, Exec  bool
	// Path names the file as Mappings gives it (the key of OpenFile);
	// TargetPath as the target sees it (a chrooted process's maps name
	// its files with its root's prefix).
	Path, TargetPath string
	// BuildID is the file's GNU build-id (hex) when known.
	BuildID string
}

// HostMachine is the ELF machine pyglass runs on: a live target's, and
// the one whose system call numbers pyglass names.
func HostMachine() elf.Machine {
	if runtime.GOARCH == "arm64" {
		return elf.EM_AARCH64
	}
	return elf.EM_X86_64
}

// LoadBase is the address at which the file of path is mapped from its
// start (the mapping of offset 0): its load bias for a file whose first
// segment is linked at 0, as shared objects and PIE programs are.
func LoadBase(maps []Mapping, path string) (uint64, bool) {
	for _, m := range maps {
		if m.Path == path && m.Offset == 0 {
			return m.Start, true
		}
	}
	return 0, false
}

// maxPthreadSize bounds the size of the C library's struct pthread
// (arm64: the thread pointer is just past it).
const maxPthreadSize = 8192

// PthreadDistance says whether tp, a thread pointer, may be the thread
// whose pthread_t is pthread on machine, and how far apart they are. On
// x86-64 (glibc and musl) fs_base is the address of the thread's struct
// pthread itself. On arm64 tpidr_el0 points just past it (glibc:
// THREAD_SELF is the thread pointer minus sizeof(struct pthread); musl
// keeps a small gap), so the nearest thread pointer above pthread is it.
func PthreadDistance(machine elf.Machine, tp, pthread uint64) (uint64, bool) {
	if machine == elf.EM_AARCH64 {
		if tp <= pthread || tp-pthread > maxPthreadSize {
			return 0, false
		}
		return tp - pthread, true
	}
	return 0, tp == pthread
}

// TaskOf maps a thread_id (pthread_t) to the NSTID of the thread whose
// thread pointer it is (cpython.ThreadOptions.TaskOf); nil when no thread
// of threads has a known thread pointer.
func TaskOf(machine elf.Machine, threads []Thread) func(uint64) (int, bool) {
	type tp struct {
		addr uint64
		ns   int
	}
	var tps []tp
	for _, t := range threads {
		if t.TP != 0 {
			tps = append(tps, tp{t.TP, t.NSTID})
		}
	}
	if len(tps) == 0 {
		return nil
	}
	return func(id uint64) (int, bool) {
		best, bestDist := 0, ^uint64(0)
		for _, t := range tps {
			if d, ok := PthreadDistance(machine, t.addr, id); ok && d < bestDist {
				best, bestDist = t.ns, d
			}
		}
		return best, best != 0
	}
}
