package channel

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/rootfs"
	"golang.org/x/sys/unix"
)

// The tests build hostile roots from real directories and symlinks; the
// channel is made in them as in a target's /proc/PID/root.

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// other is a uid and gid that are neither ours nor the target's.
const otherUID, otherGID = 4242, 4242

// targetIDs are the target's user as the tests give it: another user
// when we are root (so the chown is exercised), else ourselves.
func targetIDs() (int, int) {
	if os.Geteuid() == 0 {
		return 65534, 65534
	}
	return os.Geteuid(), os.Getegid()
}

// hostileRoot returns a root whose /tmp is a symlink, absolute or
// climbing out with ../, to the host directory host; the root has its
// own directory at that path, which is where the target's /tmp really is.
func hostileRoot(t *testing.T, relative bool) (root, host string) {
	t.Helper()
	host = hostDir(t)
	root = t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, host), 0o777))
	must(t, os.Chmod(filepath.Join(root, host), 0o1777))
	link := host
	if relative {
		link = strings.Repeat("../", 3+strings.Count(root, "/")) + strings.TrimPrefix(host, "/")
	}
	must(t, os.Symlink(link, filepath.Join(root, "tmp")))
	return root, host
}

// hostDir is a fresh host directory outside /tmp (the roots' /tmp is
// the symlink).
func hostDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "pyglass-test-host-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func openRoot(t *testing.T, dir string) *rootfs.Root {
	t.Helper()
	r, err := rootfs.OpenDir(dir)
	must(t, err)
	return r
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestCreateInsideRoot: with the target's /tmp an absolute or a climbing
// relative symlink, the channel is made where the target sees its /tmp
// (inside its root), never in the host directory the link names.
func TestCreateInsideRoot(t *testing.T) {
	for _, relative := range []bool{false, true} {
		name := map[bool]string{false: "absolute", true: "relative"}[relative]
		t.Run(name, func(t *testing.T) {
			root, host := hostileRoot(t, relative)
			uid, gid := targetIDs()
			c, err := create(openRoot(t, root), uid, gid)
			must(t, err)
			inside := filepath.Join(root, host, filepath.Base(c.Dir))
			if !strings.HasPrefix(c.Dir, "/tmp/pyglass-") {
				t.Fatalf("Dir = %q", c.Dir)
			}
			must(t, c.WriteFile("agent.py", []byte("x")))
			if got := entries(t, host); len(got) != 0 {
				t.Fatalf("created in the host directory: %v", got)
			}
			var st syscall.Stat_t
			must(t, syscall.Lstat(inside, &st))
			if st.Mode&0o7777 != 0o700 || int(st.Uid) != uid || int(st.Gid) != gid {
				t.Fatalf("directory mode %o owner %d:%d, want 0700 %d:%d", st.Mode&0o7777, st.Uid, st.Gid, uid, gid)
			}
			for _, n := range []string{SocketName, "agent.py"} {
				must(t, syscall.Lstat(filepath.Join(inside, n), &st))
				if st.Mode&0o777 != 0o600 || int(st.Uid) != uid {
					t.Fatalf("%s mode %o owner %d, want 0600 %d", n, st.Mode&0o777, st.Uid, uid)
				}
			}
			// The socket listens where the target will look for it.
			df, err := os.Open(inside)
			must(t, err)
			conn, err := net.Dial("unix", "/proc/self/fd/"+strconv.Itoa(int(df.Fd()))+"/"+SocketName)
			df.Close()
			must(t, err)
			conn.Close()
			must(t, c.Check())
			must(t, c.Close())
			if got := entries(t, filepath.Join(root, host)); len(got) != 0 {
				t.Fatalf("left behind: %v", got)
			}
		})
	}
}

// TestSwappedForSymlink: the target's user owns the directory once it is
// given to it; renaming it and putting a symlink to a host directory in
// its place makes Check fail, and neither writing the agent's files nor
// Close touches what the symlink points to.
func TestSwappedForSymlink(t *testing.T) {
	root, host := hostileRoot(t, false)
	victim := t.TempDir()
	must(t, os.WriteFile(filepath.Join(victim, "keep"), []byte("x"), 0o644))
	uid, gid := targetIDs()
	c, err := create(openRoot(t, root), uid, gid)
	must(t, err)
	defer c.Close()
	tmp := filepath.Join(root, host)
	name := filepath.Base(c.Dir)
	must(t, os.Rename(filepath.Join(tmp, name), filepath.Join(tmp, "moved")))
	must(t, os.Symlink(victim, filepath.Join(tmp, name)))
	if err := c.Check(); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Check after the swap: %v, want ErrUnsafe", err)
	}
	must(t, c.WriteFile("agent.py", []byte("x")))
	if _, err := os.Lstat(filepath.Join(tmp, "moved", "agent.py")); err != nil {
		t.Fatalf("the file did not go into the directory pyglass made: %v", err)
	}
	must(t, c.Close())
	if got := entries(t, victim); len(got) != 1 || got[0] != "keep" {
		t.Fatalf("the symlink's target changed: %v", got)
	}
	if fi, err := os.Lstat(filepath.Join(tmp, name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was removed or replaced: %v", err)
	}
	if got := entries(t, filepath.Join(tmp, "moved")); len(got) != 0 {
		t.Fatalf("the moved directory still holds %v", got)
	}

	// The base directory replaced: Check fails too.
	c2, err := create(openRoot(t, root), uid, gid)
	must(t, err)
	defer c2.Close()
	must(t, os.Remove(filepath.Join(root, "tmp")))
	must(t, os.Mkdir(filepath.Join(root, "tmp"), 0o1777))
	if err := c2.Check(); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Check after /tmp changed: %v, want ErrUnsafe", err)
	}
}

// TestSweepOnlyOwnDirectories: the sweep removes a stale directory
// pyglass made and leaves everything else named like one: a symlink, a
// directory of another user, one with another mode, one whose lock file
// the target's user forged, one still locked.
func TestSweepOnlyOwnDirectories(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make files of other users")
	}
	uid, gid := targetIDs()
	root := t.TempDir()
	tmp := filepath.Join(root, "tmp")
	must(t, os.Mkdir(tmp, 0o1777))
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, LockName), nil, 0o600))
	must(t, os.WriteFile(filepath.Join(outside, "keep"), nil, 0o600))
	old := time.Now().Add(-time.Hour)
	mk := func(name string, mode os.FileMode, dirUID, lockUID int) string {
		p := filepath.Join(tmp, "pyglass-"+name)
		must(t, os.Mkdir(p, 0o700))
		if lockUID >= 0 {
			must(t, os.WriteFile(filepath.Join(p, LockName), nil, 0o600))
			must(t, os.Lchown(filepath.Join(p, LockName), lockUID, lockUID))
		}
		must(t, os.WriteFile(filepath.Join(p, "agent.py"), nil, 0o600))
		must(t, os.Chmod(p, mode))
		must(t, os.Lchown(p, dirUID, dirUID))
		must(t, os.Chtimes(p, old, old))
		return p
	}
	const hex = "0123456789abcdef01234567"
	stale := mk("a"+hex[1:], 0o700, uid, 0)
	staleNoLock := mk("b"+hex[1:], 0o700, 0, -1)
	others := mk("c"+hex[1:], 0o700, otherUID, 0)
	mode := mk("d"+hex[1:], 0o755, uid, 0)
	forged := mk("e"+hex[1:], 0o700, uid, uid)
	locked := mk("f"+hex[1:], 0o700, uid, 0)
	young := filepath.Join(tmp, "pyglass-9"+hex[1:])
	must(t, os.Mkdir(young, 0o700))
	link := filepath.Join(tmp, "pyglass-8"+hex[1:])
	must(t, os.Symlink(outside, link))
	must(t, os.Lchown(link, uid, gid))
	lf, err := os.Open(filepath.Join(locked, LockName))
	must(t, err)
	defer lf.Close()
	must(t, unix.Flock(int(lf.Fd()), unix.LOCK_EX))

	c, err := create(openRoot(t, root), uid, gid)
	must(t, err)
	defer c.Close()
	for _, p := range []string{stale, staleNoLock} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s not swept: %v", filepath.Base(p), err)
		}
	}
	for _, p := range []string{others, mode, forged, locked, young, link} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
	if got := entries(t, outside); len(got) != 2 {
		t.Errorf("the symlink's target changed: %v", got)
	}
}

// TestLockDirRefused: a lock directory made by another user, open to
// others, or a symlink, is refused with ErrUnsafe, not used.
func TestLockDirRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a directory of another user")
	}
	parent := t.TempDir()
	elsewhere := t.TempDir()
	must(t, os.Chmod(elsewhere, 0o700))
	must(t, os.Symlink(elsewhere, filepath.Join(parent, "link")))
	must(t, os.Mkdir(filepath.Join(parent, "theirs"), 0o700))
	must(t, os.Chown(filepath.Join(parent, "theirs"), otherUID, otherGID))
	must(t, os.Mkdir(filepath.Join(parent, "open"), 0o700))
	must(t, os.Chmod(filepath.Join(parent, "open"), 0o777))
	for _, name := range []string{"link", "theirs", "open"} {
		d, err := openLockDir(parent, name)
		if err == nil {
			d.Close()
			t.Fatalf("lock directory %s accepted", name)
		}
		if !errors.Is(err, ErrUnsafe) {
			t.Fatalf("lock directory %s: %v, want ErrUnsafe", name, err)
		}
	}
	d, err := openLockDir(parent, "fresh")
	must(t, err)
	d.Close()

	// $XDG_RUNTIME_DIR is preferred for a user, when it is theirs alone.
	xdg := t.TempDir()
	must(t, os.Chmod(xdg, 0o700))
	must(t, os.Chown(xdg, otherUID, otherGID))
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	if p, _ := lockPlace(otherUID); p != xdg {
		t.Fatalf("lock place %s, want $XDG_RUNTIME_DIR %s", p, xdg)
	}
	must(t, os.Chmod(xdg, 0o755))
	if p, _ := lockPlace(otherUID); p == xdg {
		t.Fatal("an $XDG_RUNTIME_DIR others may enter was used")
	}
}

// TestLockFilesDoNotPileUp: Release removes the lock file; a waiter gets
// the lock after it; the lock file of a process that no longer exists is
// swept by the next Acquire.
func TestLockFilesDoNotPileUp(t *testing.T) {
	parent, name := lockPlace(os.Geteuid())
	dir := filepath.Join(parent, name)
	gone := exec.Command("true")
	must(t, gone.Run())
	deadPID := gone.Process.Pid

	ctx := context.Background()
	l, err := Acquire(ctx, deadPID, 1, time.Second, nil)
	must(t, err)
	lockFile := filepath.Join(dir, lockName(deadPID, 1))
	if _, err := os.Lstat(lockFile); err != nil {
		t.Fatalf("no lock file while held: %v", err)
	}
	got := make(chan error, 1)
	waited := make(chan struct{}, 1)
	go func() {
		l2, err := Acquire(ctx, deadPID, 1, 30*time.Second, func() { waited <- struct{}{} })
		if err == nil {
			l2.Release()
		}
		got <- err
	}()
	select {
	case <-waited:
	case err := <-got:
		t.Fatalf("the second Acquire did not wait: %v", err)
	}
	l.Release()
	must(t, <-got)
	if _, err := os.Lstat(lockFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file left after Release: %v", err)
	}

	// A pyglass killed while holding it leaves the file; the next Acquire,
	// for any process, removes it since its process is gone.
	must(t, os.WriteFile(lockFile, nil, 0o600))
	l, err = Acquire(ctx, os.Getpid(), 2, time.Second, nil)
	must(t, err)
	l.Release()
	if _, err := os.Lstat(lockFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale lock file of a dead process not swept: %v", err)
	}
}
