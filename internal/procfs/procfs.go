// Package procfs reads the facts Linux publishes about a process under
// /proc/PID, every value typed and every error wrapped.
//
// Nothing here stops, traces or otherwise touches the target: it only reads
// files. Paths the target names (mapped files, its executable, its
// /etc/passwd) are opened as the target sees them, through /proc/PID/exe
// or resolved inside the target's root by internal/rootfs (a symlink in
// the target's filesystem never leads out of it), never through the host's
// file system.
package procfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

var (
	// ErrNoProcess is returned when /proc has no entry for the PID (it never
	// existed or has been reaped).
	ErrNoProcess = errors.New("no such process")
	// ErrParse is returned when a /proc file does not have the expected format.
	ErrParse = errors.New("unexpected /proc format")
)

// maxFileSize bounds how much of any /proc file is read.
const maxFileSize = 64 << 20

// Proc names one process. The zero value is not useful; use New.
type Proc struct {
	// PID is the process id in our PID namespace.
	PID int
	// Root is the procfs mount point, normally "/proc".
	Root string
}

// New returns a Proc for pid under /proc. It does not check that the
// process exists; every method reports ErrNoProcess when it does not.
func New(pid int) Proc { return Proc{PID: pid, Root: "/proc"} }

// Self returns the calling process.
func Self() Proc { return New(os.Getpid()) }

// Path returns the path of a file under /proc/PID.
func (p Proc) Path(name string) string {
	return p.Root + "/" + strconv.Itoa(p.PID) + "/" + name
}

// Exists reports whether /proc/PID exists (zombies included).
func (p Proc) Exists() bool {
	_, err := os.Stat(p.Path(""))
	return err == nil
}

// readFile reads /proc/PID/name, mapping a missing process to ErrNoProcess.
func (p Proc) readFile(name string) ([]byte, error) {
	f, err := os.Open(p.Path(name))
	if err != nil {
		return nil, p.wrap(name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, p.wrap(name, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("reading %s: larger than %d bytes: %w", p.Path(name), maxFileSize, ErrParse)
	}
	return b, nil
}

// wrap turns an error opening or reading /proc/PID/name into a wrapped
// error; ENOENT and ESRCH become ErrNoProcess when the process is gone.
func (p Proc) wrap(name string, err error) error {
	if errors.Is(err, syscall.ESRCH) || (errors.Is(err, fs.ErrNotExist) && !p.Exists()) {
		return fmt.Errorf("reading %s: %w", p.Path(name), ErrNoProcess)
	}
	return fmt.Errorf("reading %s: %w", p.Path(name), err)
}
