package pyglass

import (
	"errors"
	"time"

	"github.com/pyglass/pyglass/internal/coredump"
)

// DumpResult says what Dump wrote.
type DumpResult struct {
	Path    string        `json:"path"`
	Bytes   int64         `json:"bytes"`
	Threads int           `json:"threads"`
	Paused  time.Duration `json:"paused_ns"` // how long the threads were held
}

// ErrNoSpace: a core would not fit on its file system.
var ErrNoSpace = coredump.ErrNoSpace

// Dump writes a standard ELF core of the process to path (which must not
// exist), as gdb's gcore does: the threads are paused while their
// registers and memory are copied, then released, untraced. It refuses
// (ErrNoSpace) when the core would leave less than 64 MiB free. The files
// the core names are as pyglass sees them (read it on this machine
// without --sysroot).
func (p *Process) Dump(path string) (_ DumpResult, err error) {
	defer guard(&err, "dump", p.pid)
	res, err := coredump.Write(p.pid, path)
	if err != nil {
		if errors.Is(err, coredump.ErrNoSpace) {
			return DumpResult{}, &Error{Kind: ErrNoSpace, Msg: err.Error(), Hint: "write the core elsewhere with -o FILE"}
		}
		return DumpResult{}, p.goneOr(p.ptraceError(err))
	}
	return DumpResult{Path: res.Path, Bytes: res.Bytes, Threads: res.Threads, Paused: res.Paused}, nil
}
