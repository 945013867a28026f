package rootfs

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostileRoot builds a root directory whose symlinks lead, read as plain
// paths from the host, to the host directory host; inside the root they
// lead to the root's own copy of that path.
func hostileRoot(t *testing.T) (root, host string) {
	t.Helper()
	host = t.TempDir()
	root = t.TempDir()
	write(t, filepath.Join(host, "f"), "HOST")
	write(t, filepath.Join(root, host, "f"), "ROOT")
	must(t, os.Symlink(host, filepath.Join(root, "abs")))
	must(t, os.MkdirAll(filepath.Join(root, "a/b"), 0o755))
	climb := strings.Repeat("../", 2+strings.Count(root, "/")) + strings.TrimPrefix(host, "/")
	must(t, os.Symlink(climb, filepath.Join(root, "a/b/up")))
	must(t, os.Symlink("/nonexistent-"+filepath.Base(host), filepath.Join(root, "dangling")))
	return root, host
}

func write(t *testing.T, p, s string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(s), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSymlinksStayInRoot: absolute and climbing symlinks resolve inside
// the root (as the process in it sees them), never to the host's files.
func TestSymlinksStayInRoot(t *testing.T) {
	bothWays(t, func(t *testing.T) {
		root, host := hostileRoot(t)
		r, err := OpenDir(root)
		must(t, err)
		defer r.Close()
		for _, p := range []string{"/abs/f", "/a/b/up/f", "/a/b/../b/up/f", "/../../abs/f"} {
			// The plain path, as pyglass used to open it, reaches the host.
			if b, err := os.ReadFile(root + p); err == nil && string(b) != "HOST" && !strings.Contains(p, "/../../") {
				t.Fatalf("the test's root is not hostile: %s reads %q", p, b)
			}
			b, err := r.ReadFile(p, 100)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if string(b) != "ROOT" {
				t.Fatalf("%s read %q, want the root's own file", p, b)
			}
		}
		if _, err := r.OpenFile("/dangling"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a symlink to a path missing in the root: got %v, want not-exist", err)
		}
		if _, err := r.OpenFile("relative"); err == nil {
			t.Fatal("a relative path was accepted")
		}
		d, err := r.OpenDir("/abs")
		must(t, err)
		defer d.Close()
		f, err := d.Create("new", os.O_WRONLY, 0o600)
		must(t, err)
		f.Close()
		if _, err := os.Lstat(filepath.Join(root, host, "new")); err != nil {
			t.Fatalf("file not created inside the root: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(host, "new")); err == nil {
			t.Fatal("file created in the host's directory")
		}
	})
}

// TestNoMagicLinks: /proc's magic links (another process's root, an fd)
// are refused, whatever the root.
func TestNoMagicLinks(t *testing.T) {
	r, err := OpenDir("/")
	must(t, err)
	defer r.Close()
	if _, err := r.OpenDir("/proc/self/root/etc"); err == nil {
		t.Fatal("/proc/self/root was followed")
	}
	if _, err := r.OpenDir("/proc/self/cwd"); err == nil {
		t.Fatal("/proc/self/cwd was followed")
	}
	if _, err := r.OpenDir("/proc/self/fd"); err != nil {
		t.Fatalf("a plain /proc directory: %v", err)
	}
}

// TestNotRegular: a FIFO or a directory named as a file is refused at
// once, without blocking on the FIFO.
func TestNotRegular(t *testing.T) {
	bothWays(t, func(t *testing.T) {
		root := t.TempDir()
		must(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
		r, err := OpenDir(root)
		must(t, err)
		defer r.Close()
		done := make(chan error, 1)
		go func() { _, err := r.OpenFile("/fifo"); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Fatalf("FIFO: got %v, want ErrNotRegular", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("opening a FIFO blocked")
		}
		if _, err := r.OpenFile("/"); !errors.Is(err, ErrNotRegular) {
			t.Fatalf("directory: got %v, want ErrNotRegular", err)
		}
	})
}

// TestDirNeverFollows: the single-name operations refuse or remove
// symlinks, never what they point to.
func TestDirNeverFollows(t *testing.T) {
	outside := t.TempDir()
	write(t, filepath.Join(outside, "keep"), "x")
	root := t.TempDir()
	must(t, os.Symlink(outside, filepath.Join(root, "link")))
	must(t, os.Mkdir(filepath.Join(root, "tree"), 0o700))
	must(t, os.Symlink(outside, filepath.Join(root, "tree", "link")))
	must(t, os.Symlink(filepath.Join(outside, "keep"), filepath.Join(root, "tree", "flink")))
	write(t, filepath.Join(root, "tree", "sub", "f"), "y")
	r, err := OpenDir(root)
	must(t, err)
	defer r.Close()
	d, err := r.OpenDir("/")
	must(t, err)
	defer d.Close()

	if _, err := d.OpenDir("link"); err == nil {
		t.Fatal("OpenDir followed a symlink")
	}
	if _, err := d.Create("link", os.O_WRONLY, 0o600); err == nil {
		t.Fatal("Create went through a symlink")
	}
	if _, err := d.OpenFile("link", os.O_RDONLY, 0); err == nil {
		t.Fatal("OpenFile followed a symlink")
	}
	for _, bad := range []string{"", ".", "..", "a/b", "link/keep"} {
		if err := d.Mkdir(bad, 0o700); !errors.Is(err, ErrBadName) {
			t.Fatalf("Mkdir(%q): got %v, want ErrBadName", bad, err)
		}
	}
	must(t, d.RemoveAll("tree"))
	must(t, d.RemoveAll("link"))
	if _, err := os.Lstat(filepath.Join(root, "tree")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(b) != "x" {
		t.Fatalf("RemoveAll reached through a symlink: %q %v", b, err)
	}
	if err := d.RemoveAll("missing"); err != nil {
		t.Fatalf("RemoveAll of a missing name: %v", err)
	}
}

// TestSame: a directory renamed away and replaced (by a symlink or by
// another directory) is no longer Same.
func TestSame(t *testing.T) {
	root := t.TempDir()
	must(t, os.Mkdir(filepath.Join(root, "d"), 0o700))
	r, err := OpenDir(root)
	must(t, err)
	defer r.Close()
	base, err := r.OpenDir("/")
	must(t, err)
	defer base.Close()
	d, err := base.OpenDir("d")
	must(t, err)
	defer d.Close()
	if !base.Same("d", d.Fd()) {
		t.Fatal("a directory is not the same as itself")
	}
	must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "moved")))
	must(t, os.Symlink("moved", filepath.Join(root, "d")))
	if base.Same("d", d.Fd()) {
		t.Fatal("a symlink to the directory counts as the directory")
	}
	must(t, os.Remove(filepath.Join(root, "d")))
	must(t, os.Mkdir(filepath.Join(root, "d"), 0o700))
	if base.Same("d", d.Fd()) {
		t.Fatal("another directory counts as the directory")
	}
}

// TestSocketPath: a socket bound through SocketPath lands in the
// directory held open, even after that directory was renamed and its
// old name made a symlink elsewhere.
func TestSocketPath(t *testing.T) {
	bothWays(t, func(t *testing.T) {
		root := t.TempDir()
		outside := t.TempDir()
		must(t, os.Mkdir(filepath.Join(root, "d"), 0o700))
		r, err := OpenDir(root)
		must(t, err)
		defer r.Close()
		d, err := r.OpenDir("/d")
		must(t, err)
		defer d.Close()
		must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "moved")))
		must(t, os.Symlink(outside, filepath.Join(root, "d")))
		p, err := d.SocketPath("s")
		must(t, err)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		must(t, err)
		ln.SetUnlinkOnClose(false)
		ln.Close()
		if _, err := os.Lstat(filepath.Join(root, "moved", "s")); err != nil {
			t.Fatalf("socket not in the directory held open: %v", err)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("socket created outside: %v", ents)
		}
	})
}

// bothWays runs fn with openat2, and again as on a kernel without it
// (played by making the call fail with ENOSYS: this machine has it), where
// paths are walked component by component.
func bothWays(t *testing.T, fn func(t *testing.T)) {
	t.Run("openat2", func(t *testing.T) {
		if noOpenat2.Load() {
			t.Skip("this kernel has no openat2")
		}
		fn(t)
	})
	t.Run("walk", func(t *testing.T) {
		saved, was := openat2, noOpenat2.Load()
		called := false
		openat2 = func(int, string, *unix.OpenHow) (int, error) { called = true; return -1, unix.ENOSYS }
		noOpenat2.Store(false)
		defer func() { openat2 = saved; noOpenat2.Store(was) }()
		fn(t)
		if !called || !noOpenat2.Load() {
			t.Fatal("the walk was not used")
		}
	})
}

// TestWalkDetails: what only the walk does by itself: "..", trailing
// slashes, symlink loops, a file used as a directory.
func TestWalkDetails(t *testing.T) {
	root, _ := hostileRoot(t)
	must(t, os.Symlink("loop2", filepath.Join(root, "loop1")))
	must(t, os.Symlink("loop1", filepath.Join(root, "loop2")))
	bothWays(t, func(t *testing.T) {
		r, err := OpenDir(root)
		must(t, err)
		defer r.Close()
		for _, p := range []string{"/a/../abs/f", "/a/b/../../abs/f", "/abs/./f", "//abs//f"} {
			if b, err := r.ReadFile(p, 100); err != nil || string(b) != "ROOT" {
				t.Fatalf("%s: %q %v", p, b, err)
			}
		}
		for _, p := range []string{"/abs/", "/a/b/..", "/..", "/abs/."} {
			d, err := r.OpenDir(p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			d.Close()
		}
		if _, err := r.OpenFile("/loop1"); !errors.Is(err, syscall.ELOOP) {
			t.Fatalf("symlink loop: %v, want ELOOP", err)
		}
		if _, err := r.OpenFile("/abs/f/x"); !errors.Is(err, syscall.ENOTDIR) {
			t.Fatalf("file as a directory: %v, want ENOTDIR", err)
		}
	})
}
