package remotedebug

import "github.com/pyglass/pyglass/memory"

// ReadWriter reads and writes another address space: live.Process, whose
// WriteAt uses process_vm_writev (neither stops the process, and the
// kernel refuses to write a page the process itself could not write:
// code and read-only data stay untouched; the caller needs ptrace access,
// PTRACE_MODE_ATTACH, to the process).
//
// WriteAt stores p at addr and returns the number of bytes written; when
// that is less than len(p) the error is non-nil.
type ReadWriter interface {
	memory.Reader
	WriteAt(p []byte, addr uint64) (int, error)
}
