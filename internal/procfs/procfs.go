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
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/internal/errs"
)

var (
	// ErrNoProcess is returned when /proc has no entry for the PID (it never
	// existed or has been reaped): the errs.NoProcess kind, the one
	// sentinel for a process that is gone.
	ErrNoProcess = errs.NoProcess
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
	b, err := readAll(p.Path(name))
	if err != nil {
		return nil, p.wrap(name, err)
	}
	return b, nil
}

// readAll reads the file at path, at most maxFileSize bytes, with plain
// system calls: a report reads a hundred /proc files, and os.Open adds
// four calls to each (it offers the descriptor to the poller and checks
// its flags), a third of a stacks command's system calls. The reads go
// to a buffer kept for the next file; what is returned is a copy of the
// right size (a fresh 4 KiB buffer per file was an eighth of what a
// stacks command allocates, each page of it a page fault).
func readAll(path string) ([]byte, error) {
	fd, err := openRetry(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	bp := readBufs.Get().(*[]byte)
	b := (*bp)[:0]
	defer func() {
		if cap(b) <= maxPooledRead { // a large file's buffer is not kept
			*bp = b[:0]
			readBufs.Put(bp)
		}
	}()
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		b = b[:len(b)+n]
		if len(b) > maxFileSize {
			return nil, fmt.Errorf("reading %s: larger than %d bytes: %w", path, maxFileSize, ErrParse)
		}
	}
	return bytes.Clone(b), nil
}

// maxPooledRead is the largest buffer readAll keeps for the next file.
const maxPooledRead = 64 << 10

// readBufs holds readAll's buffers, of at most maxPooledRead bytes.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// openRetry opens path read-only, again when a signal interrupts it.
func openRetry(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// wrap turns an error opening or reading /proc/PID/name into a wrapped
// error; ENOENT and ESRCH become ErrNoProcess when the process is gone.
func (p Proc) wrap(name string, err error) error {
	if errors.Is(err, syscall.ESRCH) || (errors.Is(err, fs.ErrNotExist) && !p.Exists()) {
		return fmt.Errorf("reading %s: %w", p.Path(name), ErrNoProcess)
	}
	return fmt.Errorf("reading %s: %w", p.Path(name), err)
}

// readDirNames lists at most max names of the directory at path ("." and
// ".." left out), with plain system calls, as readAll reads.
func readDirNames(path string, max int) ([]string, error) {
	fd, err := openRetry(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 8192)
	for len(names) < max {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if len(names) > 0 {
				return names, nil
			}
			return nil, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], max-len(names), names)
	}
	return names, nil
}
