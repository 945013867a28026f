package channel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/rootfs"
	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Lock when another pyglass kept the target
// for longer than the wait allowed.
var ErrLocked = errors.New("another pyglass is working on this process")

// Lock serialises the pyglass runs that change a target (a second run
// waits its turn). The lock is an flock on a file named after the target's
// PID and start time, so a recycled PID gets another lock; the kernel
// releases it when pyglass exits in any manner. The holder removes the
// file when it releases the lock; a waiter that then holds the lock of a
// removed file opens the new one.
type Lock struct {
	f    *os.File
	dir  *rootfs.Dir
	name string
}

// lockPlace returns where the lock directory of user euid is:
// /run/pyglass for root, else $XDG_RUNTIME_DIR/pyglass when that
// directory is the user's alone, else /tmp/pyglass-UID.
func lockPlace(euid int) (parent, name string) {
	if euid == 0 {
		if st, err := os.Stat("/run"); err == nil && st.IsDir() {
			return "/run", "pyglass"
		}
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(x) {
		if d, err := openDirAt(x); err == nil {
			err = private(d, euid)
			d.Close()
			if err == nil {
				return x, "pyglass"
			}
		}
	}
	return os.TempDir(), fmt.Sprintf("pyglass-%d", euid)
}

// private checks that d is a directory of euid that no one else may
// enter.
func private(d *rootfs.Dir, euid int) error {
	st, err := d.Stat()
	if err != nil {
		return err
	}
	if int(st.Uid) != euid || st.Mode&0o077 != 0 {
		return fmt.Errorf("%w: %s belongs to uid %d with mode %04o, not to uid %d alone", ErrUnsafe, d.Name(), st.Uid, st.Mode&0o7777, euid)
	}
	return nil
}

// openLockDir opens the lock directory name in parent, making it if
// needed; one that another user made, that others may enter, or a
// symlink, is refused.
func openLockDir(parent, name string) (*rootfs.Dir, error) {
	p := filepath.Join(parent, name)
	pd, err := openDirAt(parent)
	if err != nil {
		return nil, fmt.Errorf("opening the lock directory's parent: %w", err)
	}
	defer pd.Close()
	if err := pd.Mkdir(name, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating the lock directory: %w", err)
	}
	d, err := pd.OpenDir(name)
	if err != nil {
		return nil, fmt.Errorf("%w: the lock directory %s cannot be opened as a directory of ours (a symlink, another user's?): %v; remove it", ErrUnsafe, p, err)
	}
	if err := private(d, os.Geteuid()); err != nil {
		d.Close()
		return nil, fmt.Errorf("the lock directory: %w; remove it", err)
	}
	return d, nil
}

// openDirAt opens the host directory p.
func openDirAt(p string) (*rootfs.Dir, error) {
	host, err := rootfs.OpenDir("/")
	if err != nil {
		return nil, err
	}
	defer host.Close()
	return host.OpenDir(p)
}

// lockName is the lock file of (pid, start).
func lockName(pid int, start uint64) string {
	return strconv.Itoa(pid) + "-" + strconv.FormatUint(start, 10) + ".lock"
}

// Acquire takes the lock for (pid, start), waiting at most wait. waiting
// is called once if the lock is held by someone else.
func Acquire(ctx context.Context, pid int, start uint64, wait time.Duration, waiting func()) (*Lock, error) {
	dir, err := openLockDir(lockPlace(os.Geteuid()))
	if err != nil {
		return nil, err
	}
	sweepLocks(dir)
	name := lockName(pid, start)
	deadline := time.Now().Add(wait)
	told := false
	for {
		f, err := lockOnce(dir, name)
		if err != nil {
			dir.Close()
			return nil, err
		}
		if f != nil {
			return &Lock{f: f, dir: dir, name: name}, nil
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		if time.Now().After(deadline) {
			dir.Close()
			return nil, ErrLocked
		}
		select {
		case <-ctx.Done():
			dir.Close()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// lockOnce opens (creating it) the lock file name in dir and tries to
// flock it; it returns nil, nil when another pyglass holds it.
func lockOnce(dir *rootfs.Dir, name string) (*os.File, error) {
	for try := 0; try < 100; try++ {
		f, err := dir.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening lock file: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, nil
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if dir.Same(name, int(f.Fd())) {
			return f, nil
		}
		// The holder before us removed it as it let go: take the new one.
		f.Close()
	}
	return nil, fmt.Errorf("locking %s/%s: the file keeps being replaced", dir.Name(), name)
}

// sweepLocksMax bounds the lock files sweepLocks reads.
const sweepLocksMax = 10000

// sweepLocks removes the lock files of processes that no longer exist
// (left by a pyglass killed while it held them) and that nobody holds.
func sweepLocks(dir *rootfs.Dir) {
	names, err := dir.Names(sweepLocksMax)
	if err != nil {
		return
	}
	for _, name := range names {
		pidText, startText, ok := strings.Cut(strings.TrimSuffix(name, ".lock"), "-")
		pid, err1 := strconv.Atoi(pidText)
		start, err2 := strconv.ParseUint(startText, 10, 64)
		if !ok || !strings.HasSuffix(name, ".lock") || err1 != nil || err2 != nil || pid <= 0 {
			continue
		}
		if st, err := procfs.New(pid).Stat(); err == nil && st.StartTime == start {
			continue
		}
		f, err := dir.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && dir.Same(name, int(f.Fd())) {
			dir.Remove(name)
		}
		f.Close()
	}
}

// Release removes the lock file and drops the lock.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.dir.Remove(l.name)
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.dir.Close()
		l.f = nil
	}
}
