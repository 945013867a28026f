package ptrace

import (
	"errors"
	"fmt"
	"os"

	"github.com/pyglass/pyglass/memory"
	"golang.org/x/sys/unix"
)

// Mem accesses the memory of a live process. It implements memory.Reader.
type Mem struct {
	Pid int
	f   *os.File // /proc/PID/mem, opened on first write
}

// NewMem returns a Mem for pid. Close releases the /proc/PID/mem handle.
func NewMem(pid int) *Mem { return &Mem{Pid: pid} }

// ReadAt reads with process_vm_readv. A read that stops early returns
// memory.ErrShortRead or memory.ErrFault wrapped with detail.
func (m *Mem) ReadAt(p []byte, addr uint64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	local := []unix.Iovec{{Base: &p[0]}}
	local[0].SetLen(len(p))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(p)}}
	n, err := unix.ProcessVMReadv(m.Pid, local, remote, 0)
	if err != nil {
		if errors.Is(err, unix.EFAULT) {
			return 0, fmt.Errorf("reading %#x in %d: %w", addr, m.Pid, memory.ErrFault)
		}
		return 0, fmt.Errorf("reading %#x in %d: %w", addr, m.Pid, err)
	}
	if n < len(p) {
		return n, fmt.Errorf("reading %#x in %d: %w", addr, m.Pid, memory.ErrShortRead)
	}
	return n, nil
}

// WriteAt writes p at addr through /proc/PID/mem. The kernel lets the
// tracer write read-only (code) pages this way.
func (m *Mem) WriteAt(p []byte, addr uint64) error {
	if m.f == nil {
		f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", m.Pid), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("opening memory of %d: %w", m.Pid, err)
		}
		m.f = f
	}
	n, err := m.f.WriteAt(p, int64(addr))
	if err != nil {
		return fmt.Errorf("writing %d bytes at %#x in %d: %w", len(p), addr, m.Pid, err)
	}
	if n != len(p) {
		return fmt.Errorf("writing %d bytes at %#x in %d: short write (%d)", len(p), addr, m.Pid, n)
	}
	return nil
}

// Close releases the /proc/PID/mem handle, if any.
func (m *Mem) Close() error {
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}
