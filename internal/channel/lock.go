package channel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Lock when another pyglass kept the target
// for longer than the wait allowed.
var ErrLocked = errors.New("another pyglass is working on this process")

// Lock serialises the pyglass runs that change a target (a second run
// waits its turn). The lock is an flock on a file named after the target's
// PID and start time, so a recycled PID gets another lock; the kernel
// releases it when pyglass exits in any manner.
type Lock struct{ f *os.File }

func lockDir() string {
	if os.Geteuid() == 0 {
		if st, err := os.Stat("/run"); err == nil && st.IsDir() {
			return "/run/pyglass"
		}
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("pyglass-%d", os.Geteuid()))
}

// Acquire takes the lock for (pid, start), waiting at most wait. waiting
// is called once if the lock is held by someone else.
func Acquire(ctx context.Context, pid int, start uint64, wait time.Duration, waiting func()) (*Lock, error) {
	dir := lockDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	p := filepath.Join(dir, fmt.Sprintf("%d-%d.lock", pid, start))
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	deadline := time.Now().Add(wait)
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", p, err)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, ErrLocked
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Release drops the lock. The file stays (removing it would race with a
// waiter); it is empty and tiny.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}
