// Package rootfs resolves paths inside another process's root directory
// the way that process would, and never outside it.
//
// A path the target names (a mapped file, a source file in a frame, its
// /tmp) is hostile input: an absolute symlink in a container resolved
// through the plain path /proc/PID/root/... would lead into pyglass's own
// root, a relative one climbing ../../.. likewise. Root opens such paths
// with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) from a directory fd
// of /proc/PID/root: absolute symlinks and ".." are resolved against the
// target's root, as in a chroot, and /proc magic links are refused. Dir
// then works on single names relative to a directory fd (mkdirat,
// openat with O_NOFOLLOW, unlinkat, fchown on the fd), so that a directory
// once opened cannot be swapped for a symlink under pyglass's feet.
//
// Kernels without openat2 (before Linux 5.6) get the same resolution
// done component by component with O_PATH|O_NOFOLLOW (walk.go).
package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotRegular is returned by OpenFile for anything but a regular file
	// (a FIFO or a device named by the target must not block or feed
	// pyglass forever).
	ErrNotRegular = errors.New("not a regular file")
	// ErrBadName is returned for a name that is not one path component.
	ErrBadName = errors.New("not a single path component")
)

// Root is an open root directory; paths are resolved inside it.
type Root struct {
	f    *os.File // O_PATH directory
	name string   // for messages: /proc/PID/root
}

// OpenDir opens dir as a root (tests build hostile roots this way).
func OpenDir(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Root{f: os.NewFile(uintptr(fd), dir), name: dir}, nil
}

// Close releases the root's fd.
func (r *Root) Close() error { return r.f.Close() }

// Name is the root's path, for messages.
func (r *Root) Name() string { return r.name }

// openat2 is the system call (a variable so that a test can play a kernel
// without it, which then walks).
var openat2 = unix.Openat2

// openat2Attempts bounds the tries; the kernel returns EAGAIN when a rename
// or mount raced with a RESOLVE_IN_ROOT lookup.
const openat2Attempts = 64

// open resolves path (absolute, as the target sees it) inside r.
func (r *Root) open(path string, flags int, mode uint32) (int, error) {
	if !strings.HasPrefix(path, "/") {
		return -1, &os.PathError{Op: "open", Path: path, Err: errors.New("path is not absolute")}
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	var err error
	for i := 0; i < openat2Attempts && !noOpenat2.Load(); i++ {
		var fd int
		fd, err = openat2(int(r.f.Fd()), path, &how)
		if err == nil {
			return fd, nil
		}
		if err == unix.ENOSYS {
			noOpenat2.Store(true)
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	if noOpenat2.Load() {
		var fd int
		if fd, err = walk(int(r.f.Fd()), path, flags); err == nil {
			return fd, nil
		}
	}
	return -1, &os.PathError{Op: "open", Path: r.name + path, Err: err}
}

// OpenFile opens the regular file at path, read-only. A FIFO, device or
// directory gives ErrNotRegular without blocking.
func (r *Root) OpenFile(path string) (*os.File, error) {
	fd, err := r.open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	return regular(fd, r.name+path)
}

// ReadFile reads the regular file at path, at most limit bytes.
func (r *Root) ReadFile(path string, limit int64) ([]byte, error) {
	f, err := r.OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// OpenDir opens the directory at path.
func (r *Root) OpenDir(path string) (*Dir, error) {
	fd, err := r.open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	return &Dir{f: os.NewFile(uintptr(fd), r.name+path)}, nil
}

// regular wraps fd as an *os.File if it is a regular file, with blocking
// reads (a regular file never blocks anyway).
func regular(fd int, name string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Dir is an open directory. Its methods take single names (no "/", not
// "." or "..") and never follow a symlink in that name.
type Dir struct {
	f *os.File
}

// Fd is the directory's file descriptor.
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// Name is the directory's path, for messages.
func (d *Dir) Name() string { return d.f.Name() }

// Close releases the directory's fd.
func (d *Dir) Close() error { return d.f.Close() }

func (d *Dir) path(name string) string { return d.f.Name() + "/" + name }

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%q: %w", name, ErrBadName)
	}
	return nil
}

func (d *Dir) pathErr(op, name string, err error) error {
	return &os.PathError{Op: op, Path: d.path(name), Err: err}
}

// Stat is fstat of the directory itself.
func (d *Dir) Stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.Fd(), &st); err != nil {
		return st, &os.PathError{Op: "stat", Path: d.f.Name(), Err: err}
	}
	return st, nil
}

// Lstat is fstatat of name without following it.
func (d *Dir) Lstat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := checkName(name); err != nil {
		return st, err
	}
	if err := unix.Fstatat(d.Fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, d.pathErr("lstat", name, err)
	}
	return st, nil
}

// Mkdir creates the directory name with mode (before umask).
func (d *Dir) Mkdir(name string, mode uint32) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Mkdirat(d.Fd(), name, mode); err != nil {
		return d.pathErr("mkdir", name, err)
	}
	return nil
}

// OpenDir opens the directory name; a symlink is refused.
func (d *Dir) OpenDir(name string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.Fd(), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d.pathErr("open", name, err)
	}
	return &Dir{f: os.NewFile(uintptr(fd), d.path(name))}, nil
}

// Create creates the file name, which must not exist (not even as a
// symlink), opened with flags (O_RDONLY, O_WRONLY or O_RDWR) and mode.
func (d *Dir) Create(name string, flags int, mode uint32) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.Fd(), name, flags|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, d.pathErr("create", name, err)
	}
	return os.NewFile(uintptr(fd), d.path(name)), nil
}

// OpenFile opens the existing regular file name with flags (a symlink,
// FIFO or device is refused). With O_CREAT, it is created if missing.
func (d *Dir) OpenFile(name string, flags int, mode uint32) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.Fd(), name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, d.pathErr("open", name, err)
	}
	return regular(fd, d.path(name))
}

// Remove unlinks the non-directory name (a symlink itself, never what it
// points to).
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Unlinkat(d.Fd(), name, 0); err != nil {
		return d.pathErr("unlink", name, err)
	}
	return nil
}

// Names lists the directory's entries (without "." and ".."), at most max.
func (d *Dir) Names(max int) ([]string, error) {
	// A fresh open description, so that listing twice works and the
	// offset of d is untouched.
	fd, err := unix.Openat(d.Fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.f.Name(), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.f.Name())
	defer f.Close()
	var out []string
	for len(out) < max {
		names, err := f.Readdirnames(min(256, max-len(out)))
		out = append(out, names...)
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// removeLimits bound RemoveAll on a tree the target may have filled.
const (
	removeMaxDepth   = 16
	removeMaxEntries = 4096
)

// RemoveAll removes name and, if it is a directory, everything in it,
// through directory fds: a symlink anywhere is removed itself, never
// followed. A missing name is not an error. A tree deeper or larger than
// pyglass would ever make is left partly in place (with an error).
func (d *Dir) RemoveAll(name string) error {
	budget := removeMaxEntries
	err := d.removeAll(name, 0, &budget)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// RemoveContents removes everything in d (as RemoveAll does), leaving d
// itself, empty.
func (d *Dir) RemoveContents() error {
	budget := removeMaxEntries
	return d.clear(0, &budget)
}

// Rmdir removes the empty directory name.
func (d *Dir) Rmdir(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Unlinkat(d.Fd(), name, unix.AT_REMOVEDIR); err != nil {
		return d.pathErr("rmdir", name, err)
	}
	return nil
}

func (d *Dir) removeAll(name string, depth int, budget *int) error {
	if err := checkName(name); err != nil {
		return err
	}
	*budget--
	if *budget < 0 {
		return d.pathErr("remove", name, errors.New("too many entries"))
	}
	err := unix.Unlinkat(d.Fd(), name, 0)
	if err == unix.ENOENT {
		return d.pathErr("remove", name, os.ErrNotExist)
	}
	if err == nil {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return d.pathErr("unlink", name, err)
	}
	if depth >= removeMaxDepth {
		return d.pathErr("remove", name, errors.New("too deep"))
	}
	sub, err := d.OpenDir(name)
	if err != nil {
		return err
	}
	err = sub.clear(depth+1, budget)
	sub.Close()
	if err != nil {
		return err
	}
	return d.Rmdir(name)
}

func (d *Dir) clear(depth int, budget *int) error {
	names, err := d.Names(removeMaxEntries)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := d.removeAll(n, depth, budget); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Same reports whether the entry name in d is, right now, the file open
// as fd (same device and inode; a symlink to it never is).
func (d *Dir) Same(name string, fd int) bool {
	a, err := d.Lstat(name)
	if err != nil {
		return false
	}
	var b unix.Stat_t
	return unix.Fstat(fd, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
}

// SocketPath is a path naming name inside d for bind(2) and connect(2),
// which take paths, not fds: /proc/self/fd/N/name goes through the
// directory pyglass holds open, whatever was renamed meanwhile.
func (d *Dir) SocketPath(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	p := "/proc/self/fd/" + strconv.Itoa(d.Fd()) + "/" + name
	if len(p) >= len(unix.RawSockaddrUnix{}.Path) {
		return "", fmt.Errorf("socket path %s is too long", p)
	}
	return p, nil
}
