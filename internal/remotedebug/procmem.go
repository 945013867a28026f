package remotedebug

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/memory"
)

// ReadWriter reads and writes another address space.
//
// WriteAt stores p at addr and returns the number of bytes written; when
// that is less than len(p) the error is non-nil.
type ReadWriter interface {
	memory.Reader
	WriteAt(p []byte, addr uint64) (int, error)
}

// ErrProcessGone is returned by ProcMem when the process no longer exists.
var ErrProcessGone = errors.New("process gone")

// ProcMem reads and writes a live process's memory with
// process_vm_readv and process_vm_writev. Neither stops the process, and
// the kernel refuses to write a page the process itself could not write
// (no FOLL_FORCE): code and read-only data stay untouched. The caller
// needs ptrace access (PTRACE_MODE_ATTACH) to the process.
type ProcMem struct {
	// PID is the process id as the caller's PID namespace sees it.
	PID int
}

// ReadAt implements memory.Reader. An unmapped address gives
// memory.ErrFault, a vanished process ErrProcessGone.
func (m ProcMem) ReadAt(p []byte, addr uint64) (int, error) {
	return m.transfer(p, addr, false)
}

// WriteAt writes p at addr in the process. It fails with memory.ErrFault
// on an unmapped or read-only page; a failed write may have stored a
// prefix of p (the count says how much).
func (m ProcMem) WriteAt(p []byte, addr uint64) (int, error) {
	return m.transfer(p, addr, true)
}

func (m ProcMem) transfer(p []byte, addr uint64, write bool) (int, error) {
	done := 0
	// Each round moves at least one byte or fails; the bound only
	// guards against a kernel that returns 0 forever.
	for round := 0; done < len(p) && round < len(p)+1; round++ {
		local := []unix.Iovec{{Base: (*byte)(unsafe.Pointer(&p[done]))}}
		local[0].SetLen(len(p) - done)
		remote := []unix.RemoteIovec{{Base: uintptr(addr) + uintptr(done), Len: len(p) - done}}
		var n int
		var err error
		if write {
			n, err = unix.ProcessVMWritev(m.PID, local, remote, 0)
		} else {
			n, err = unix.ProcessVMReadv(m.PID, local, remote, 0)
		}
		if err != nil {
			return done, m.wrap(addr+uint64(done), err)
		}
		if n == 0 {
			break
		}
		done += n
	}
	if done < len(p) {
		return done, fmt.Errorf("at %#x: %w", addr+uint64(done), memory.ErrShortRead)
	}
	return done, nil
}

func (m ProcMem) wrap(addr uint64, err error) error {
	switch {
	case errors.Is(err, unix.EFAULT):
		return fmt.Errorf("at %#x in process %d: %w", addr, m.PID, memory.ErrFault)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("process %d: %w", m.PID, ErrProcessGone)
	}
	return fmt.Errorf("accessing memory of process %d at %#x: %w", m.PID, addr, err)
}
