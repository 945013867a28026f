// Package channel makes the private place where pyglass and the code it
// runs inside a target meet: a fresh directory with a random name,
// created in the target's own mount namespace (through /proc/PID/root, so
// a container's or a service's private /tmp is used, not the host's),
// owned by the target's user with mode 0700, holding a Unix socket that
// only that user and root can connect to. Nothing listens on a network
// port. Close removes the directory and everything in it.
package channel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// SocketName is the name of the Unix socket inside the directory.
const SocketName = "s"

// LockName is the file a live pyglass keeps flocked in its directory.
const LockName = "lock"

// namePattern matches the directories this package creates.
var namePattern = regexp.MustCompile(`^pyglass-[0-9a-f]{24}$`)

// staleAge is how old a directory must be before sweep looks at it (a
// directory is locked within microseconds of its creation).
const staleAge = 5 * time.Second

// sweep removes channel directories left by a pyglass that died before
// it or its agent could remove them (SIGKILL between creating the
// directory and the agent starting): their lock file is no longer
// flocked by anyone. Directories of live sessions are locked and kept.
func sweep(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for i, e := range ents {
		if i > 100000 {
			return
		}
		if !e.IsDir() || !namePattern.MatchString(e.Name()) {
			continue
		}
		p := dir + "/" + e.Name()
		st, err := os.Lstat(p)
		if err != nil || time.Since(st.ModTime()) < staleAge {
			continue
		}
		lf, err := os.OpenFile(p+"/"+LockName, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			// No lock file: the agent already removed what it could, or
			// the directory never got that far.
			if errors.Is(err, os.ErrNotExist) {
				os.RemoveAll(p)
			}
			continue
		}
		if unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		lf.Close()
	}
}

// Channel is one private directory and the socket listening in it.
type Channel struct {
	// Dir is the directory's path as the target sees it.
	Dir string
	// HostDir is the same directory as pyglass reaches it
	// (/proc/PID/root/...).
	HostDir string
	ln      *net.UnixListener
	lock    *os.File // flocked while this pyglass uses the directory
	uid     int
	gid     int
	closed  bool
}

// bases are the places tried, in order, as the target sees them.
var bases = []string{"/tmp", "/var/tmp", "/dev/shm"}

// Create makes the directory and starts listening. uid and gid are the
// target's effective ids; the directory and socket are given to them so
// that a target running as another user can connect, and nobody else.
func Create(pid, uid, gid int) (*Channel, error) {
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	var errs []error
	for _, base := range bases {
		st, err := os.Stat(root + base)
		if err != nil || !st.IsDir() {
			continue
		}
		c, err := create(root, base, uid, gid)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no /tmp, /var/tmp or /dev/shm in the target's filesystem")
	}
	return nil, fmt.Errorf("creating a private directory in the target's filesystem: %w", errors.Join(errs...))
}

func create(root, base string, uid, gid int) (*Channel, error) {
	sweep(root + base)
	var name string
	var err error
	for i := 0; i < 8; i++ {
		var b [12]byte
		if _, err = rand.Read(b[:]); err != nil {
			return nil, err
		}
		name = "pyglass-" + hex.EncodeToString(b[:])
		err = os.Mkdir(root+base+"/"+name, 0o700)
		if err == nil || !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	c := &Channel{Dir: base + "/" + name, HostDir: root + base + "/" + name, uid: uid, gid: gid}
	// Mkdir is subject to umask; make the mode exact.
	if err := os.Chmod(c.HostDir, 0o700); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.chown(c.HostDir); err != nil {
		c.Close()
		return nil, err
	}
	// The lock file says "a pyglass is using this directory": it stays
	// flocked until Close or until pyglass dies, whatever the manner.
	lf, err := os.OpenFile(c.HostDir+"/"+LockName, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		c.Close()
		return nil, err
	}
	c.lock = lf
	sock := c.HostDir + "/" + SocketName
	if len(sock) >= len(unix.RawSockaddrUnix{}.Path) {
		c.Close()
		return nil, fmt.Errorf("socket path %s is too long", sock)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		c.Close()
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	c.ln = ln
	if err := os.Chmod(sock, 0o600); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.chown(sock); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Channel) chown(path string) error {
	if c.uid == os.Geteuid() && c.gid == os.Getegid() {
		return nil
	}
	return os.Lchown(path, c.uid, c.gid)
}

// WriteFile creates name in the directory with data, readable only by
// the target's user. It refuses to follow or replace anything.
func (c *Channel) WriteFile(name string, data []byte) error {
	p := filepath.Join(c.HostDir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return c.chown(p)
}

// Path returns name's path as the target sees it.
func (c *Channel) Path(name string) string { return c.Dir + "/" + name }

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
		os.Remove(c.HostDir + "/" + SocketName)
	}
}

// Close stops listening and removes the directory and its content. It is
// safe to call more than once; the code in the target may have removed
// the directory already.
func (c *Channel) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	c.StopListening()
	err := os.RemoveAll(c.HostDir)
	if c.lock != nil {
		c.lock.Close()
	}
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}
