// Package channel makes the private place where pyglass and the code it
// runs inside a target meet: a fresh directory with a random name,
// created in the target's own filesystem (resolved inside its root, so a
// container's or a service's private /tmp is used, not the host's),
// owned by the target's user with mode 0700, holding a Unix socket that
// only that user and root can connect to. Nothing listens on a network
// port. Close removes the directory and everything in it.
//
// Every operation goes through internal/rootfs: the base directory (/tmp)
// is resolved inside the target's root, never following a symlink out of
// it, and everything after mkdir works on the directory's fd, so the
// target's user, who owns the directory once it is chowned, cannot swap
// it for a symlink between two of pyglass's operations.
package channel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/rootfs"
	"golang.org/x/sys/unix"
)

// SocketName is the name of the Unix socket inside the directory.
const SocketName = "s"

// LockName is the file a live pyglass keeps flocked in its directory.
const LockName = "lock"

// ErrUnsafe is returned when something in the target's filesystem is not
// what pyglass made or expects (a directory replaced or moved, a lock
// directory owned by another user): pyglass stops rather than go on.
var ErrUnsafe = errors.New("unsafe file system state")

// namePattern matches the directories this package creates.
var namePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^pyglass-[0-9a-f]{24}$`) })

// staleAge is how old a directory must be before sweep looks at it (a
// directory is locked within microseconds of its creation).
const staleAge = 5 * time.Second

// sweepMax bounds the entries of a base directory sweep reads.
const sweepMax = 100000

// sweep removes channel directories left by a pyglass that died before
// it or its agent could remove them (SIGKILL between creating the
// directory and the agent starting): their lock file is no longer
// flocked by anyone. Directories of live sessions are locked and kept.
// Only what pyglass made is removed: a real directory (never a symlink),
// mode 0700, owned by us or by the target's user uid, whose lock file, if
// any, is a regular file owned by us (the target's user cannot make one).
func sweep(base *rootfs.Dir, uid int) {
	names, err := base.Names(sweepMax)
	if err != nil {
		return
	}
	for _, name := range names {
		if !namePattern().MatchString(name) {
			continue
		}
		d, err := base.OpenDir(name) // O_NOFOLLOW: a symlink is left alone
		if err != nil {
			continue
		}
		if stale(base, name, d, uid) {
			if d.RemoveContents() == nil && base.Same(name, d.Fd()) {
				base.Rmdir(name)
			}
		}
		d.Close()
	}
}

// stale reports whether d (named name in base) is a directory pyglass
// made whose pyglass is gone, everything checked through fds.
func stale(base *rootfs.Dir, name string, d *rootfs.Dir, uid int) bool {
	st, err := d.Stat()
	if err != nil || !base.Same(name, d.Fd()) {
		return false
	}
	euid := os.Geteuid()
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o7777 != 0o700 ||
		(int(st.Uid) != euid && int(st.Uid) != uid) ||
		time.Since(time.Unix(st.Mtim.Unix())) < staleAge {
		return false
	}
	lf, err := d.OpenFile(LockName, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		// No lock file: the agent already removed what it could, or the
		// directory never got that far (it is still ours, not yet given
		// to the target's user).
		if int(st.Uid) == euid {
			return true
		}
		names, err := d.Names(1)
		return err == nil && len(names) == 0
	}
	if err != nil {
		return false
	}
	defer lf.Close()
	var lst unix.Stat_t
	if unix.Fstat(int(lf.Fd()), &lst) != nil || int(lst.Uid) != euid {
		return false
	}
	return unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// Channel is one private directory and the socket listening in it.
type Channel struct {
	// Dir is the directory's path as the target sees it.
	Dir    string
	root   *rootfs.Root
	base   *rootfs.Dir // the directory holding it (the target's /tmp)
	dir    *rootfs.Dir // the directory itself
	name   string      // its name in base
	bpath  string      // base's path as the target sees it
	ln     *net.UnixListener
	lock   *os.File // flocked while this pyglass uses the directory
	uid    int
	gid    int
	closed bool
}

// bases are the places tried, in order, as the target sees them.
var bases = []string{"/tmp", "/var/tmp", "/dev/shm"}

// Create makes the directory in process pid's filesystem and starts
// listening. uid and gid are the target's effective ids; the directory
// and socket are given to them so that a target running as another user
// can connect, and nobody else.
func Create(pid, uid, gid int) (*Channel, error) {
	root, err := procfs.New(pid).OpenRoot()
	if err != nil {
		return nil, err
	}
	c, err := create(root, uid, gid)
	if err != nil {
		root.Close()
	}
	return c, err
}

// create makes the directory inside root, which the Channel keeps.
func create(root *rootfs.Root, uid, gid int) (*Channel, error) {
	var errs []error
	for _, base := range bases {
		bd, err := root.OpenDir(base)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
				errs = append(errs, err)
			}
			continue
		}
		c, err := createIn(root, bd, base, uid, gid)
		if err == nil {
			return c, nil
		}
		bd.Close()
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no /tmp, /var/tmp or /dev/shm directory in the target's filesystem")
	}
	return nil, fmt.Errorf("creating a private directory in the target's filesystem: %w", errors.Join(errs...))
}

func createIn(root *rootfs.Root, base *rootfs.Dir, bpath string, uid, gid int) (*Channel, error) {
	sweep(base, uid)
	var name string
	var err error
	for i := 0; i < 8; i++ {
		var b [12]byte
		if _, err = rand.Read(b[:]); err != nil {
			return nil, err
		}
		name = "pyglass-" + hex.EncodeToString(b[:])
		err = base.Mkdir(name, 0o700)
		if err == nil || !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	d, err := base.OpenDir(name)
	if err != nil {
		return nil, fmt.Errorf("%w: the directory pyglass just made in %s was replaced: %v", ErrUnsafe, bpath, err)
	}
	// It is still ours alone (not yet chowned): nothing of the target's
	// can be in it. Check it is the directory made above, not one put in
	// its place.
	st, err := d.Stat()
	names, nerr := d.Names(1)
	if err != nil || nerr != nil || int(st.Uid) != os.Geteuid() || len(names) != 0 {
		d.Close()
		return nil, fmt.Errorf("%w: the directory pyglass just made in %s was replaced", ErrUnsafe, bpath)
	}
	c := &Channel{Dir: bpath + "/" + name, root: root, base: base, dir: d, name: name, bpath: bpath, uid: uid, gid: gid}
	if err := c.setup(); err != nil {
		c.remove()
		return nil, err
	}
	return c, nil
}

// setup fills the fresh directory, every step through its fd, and gives
// it to the target's user last.
func (c *Channel) setup() error {
	// Mkdir is subject to umask; make the mode exact.
	if err := unix.Fchmod(c.dir.Fd(), 0o700); err != nil {
		return &os.PathError{Op: "chmod", Path: c.dir.Name(), Err: err}
	}
	// The lock file says "a pyglass is using this directory": it stays
	// flocked until Close or until pyglass dies, whatever the manner. It
	// stays ours (the target's user cannot forge one: sweep checks).
	lf, err := c.dir.Create(LockName, os.O_RDONLY, 0o600)
	if err != nil {
		return err
	}
	c.lock = lf
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return &os.PathError{Op: "flock", Path: lf.Name(), Err: err}
	}
	sock, err := c.dir.SocketPath(SocketName)
	if err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(false)
	c.ln = ln
	// The directory is still ours alone: "s" is the socket just bound.
	if err := unix.Fchmodat(c.dir.Fd(), SocketName, 0o600, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: c.dir.Name() + "/" + SocketName, Err: err}
	}
	if c.mustChown() {
		if err := unix.Fchownat(c.dir.Fd(), SocketName, c.uid, c.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: c.dir.Name() + "/" + SocketName, Err: err}
		}
		if err := unix.Fchown(c.dir.Fd(), c.uid, c.gid); err != nil {
			return &os.PathError{Op: "chown", Path: c.dir.Name(), Err: err}
		}
	}
	return nil
}

func (c *Channel) mustChown() bool {
	return c.uid != os.Geteuid() || c.gid != os.Getegid()
}

// WriteFile creates name in the directory with data, readable only by
// the target's user. It refuses to follow or replace anything.
func (c *Channel) WriteFile(name string, data []byte) error {
	f, err := c.dir.Create(name, os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if c.mustChown() {
		if err := f.Chown(c.uid, c.gid); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// Path returns name's path as the target sees it.
func (c *Channel) Path(name string) string { return c.Dir + "/" + name }

// Check reports ErrUnsafe when the directory is no longer where the
// target will look for it: it, or the base directory holding it, was
// moved or replaced (by a symlink or anything else) since Create. The
// code pyglass starts in the target would then not find its files.
func (c *Channel) Check() error {
	if c.closed {
		return errors.New("channel closed")
	}
	if !c.base.Same(c.name, c.dir.Fd()) {
		return fmt.Errorf("%w: the private directory %s was moved or replaced in the target's filesystem", ErrUnsafe, c.Dir)
	}
	bd, err := c.root.OpenDir(c.bpath)
	if err != nil {
		return fmt.Errorf("%w: %s in the target's filesystem changed: %v", ErrUnsafe, c.bpath, err)
	}
	defer bd.Close()
	a, err1 := bd.Stat()
	b, err2 := c.base.Stat()
	if err1 != nil || err2 != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		return fmt.Errorf("%w: %s in the target's filesystem was moved or replaced", ErrUnsafe, c.bpath)
	}
	return nil
}

// Accept waits for the code in the target to connect, until the deadline
// or ctx is done.
func (c *Channel) Accept(ctx context.Context, deadline time.Time) (*net.UnixConn, error) {
	if c.ln == nil {
		return nil, errors.New("channel closed")
	}
	if err := c.ln.SetDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.ln.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn, err := c.ln.AcceptUnix()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, os.ErrDeadlineExceeded
		}
		return nil, err
	}
	return conn, nil
}

// StopListening closes the listener and removes the socket, so that
// nothing else can connect, while the directory stays for the session.
func (c *Channel) StopListening() {
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
		c.dir.Remove(SocketName)
	}
}

// Close stops listening and removes the directory and its content, all
// through the directory's fd; the directory itself is removed only if it
// still is the entry of its name. It is safe to call more than once; the
// code in the target may have removed the directory already.
func (c *Channel) Close() error {
	if c.closed {
		return nil
	}
	err := c.remove()
	c.base.Close()
	c.root.Close()
	return err
}

// remove is Close but for the base directory and the root, which belong
// to the caller while Create has not returned.
func (c *Channel) remove() error {
	c.closed = true
	c.StopListening()
	err := c.dir.RemoveContents()
	if err == nil && c.base.Same(c.name, c.dir.Fd()) {
		err = c.base.Rmdir(c.name)
	}
	if c.lock != nil {
		c.lock.Close()
	}
	c.dir.Close()
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}
