package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/pyglass/pyglass/internal/rootfs"
)

// ErrFileMismatch is returned when a path the target names leads, from
// here, to a different file than the one the target has mapped.
var ErrFileMismatch = errors.New("file differs from the one the process mapped")

// Cmdline returns the argument vector. It is empty for kernel threads and
// zombies.
func (p Proc) Cmdline() ([]string, error) {
	b, err := p.readFile("cmdline")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// Exe returns the target of the /proc/PID/exe link: the path of the main
// program as the target sees it, with a " (deleted)" suffix when the file
// was removed.
func (p Proc) Exe() (string, error) {
	s, err := os.Readlink(p.Path("exe"))
	if err != nil {
		return "", p.wrap("exe", err)
	}
	return s, nil
}

// Auxv holds the entries of the ELF auxiliary vector pyglass uses.
type Auxv struct {
	Entry uint64 // AT_ENTRY: entry point of the main program
	Base  uint64 // AT_BASE: load address of the dynamic loader (0 if static)
	Phdr  uint64 // AT_PHDR: address of the main program's program headers
}

// ELF auxiliary vector tags.
const (
	atNull  = 0
	atPhdr  = 3
	atBase  = 7
	atEntry = 9
)

// Auxv reads /proc/PID/auxv (which needs ptrace access to the process).
func (p Proc) Auxv() (*Auxv, error) {
	b, err := p.readFile("auxv")
	if err != nil {
		return nil, err
	}
	a, err := ParseAuxv(b)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", p.Path("auxv"), err)
	}
	return a, nil
}

// ParseAuxv parses a 64-bit little-endian auxiliary vector.
func ParseAuxv(b []byte) (*Auxv, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty auxiliary vector: %w", ErrParse)
	}
	a := &Auxv{}
	for i := 0; i+16 <= len(b); i += 16 {
		tag := binary.LittleEndian.Uint64(b[i:])
		val := binary.LittleEndian.Uint64(b[i+8:])
		switch tag {
		case atNull:
			return a, nil
		case atEntry:
			a.Entry = val
		case atBase:
			a.Base = val
		case atPhdr:
			a.Phdr = val
		}
	}
	return a, nil
}

// OpenExe opens the main program through /proc/PID/exe, which works in
// other mount namespaces and for deleted files.
func (p Proc) OpenExe() (*os.File, error) {
	f, err := os.Open(p.Path("exe"))
	if err != nil {
		return nil, p.wrap("exe", err)
	}
	return f, nil
}

// OpenFile opens the regular file path as the target sees it: resolved
// inside the target's root (/proc/PID/root) as the target would resolve
// it, so in its mount namespace and chroot, never following a symlink out
// of that root (internal/rootfs). path must be absolute.
func (p Proc) OpenFile(path string) (*os.File, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("opening %q in process %d: path is not absolute", path, p.PID)
	}
	root, err := rootfs.OpenDir(p.Path("root"))
	if err != nil {
		return nil, p.rootErr(err)
	}
	defer root.Close()
	f, err := root.OpenFile(path)
	if err != nil {
		return nil, p.rootErr(err)
	}
	return f, nil
}

// rootErr is err (which names its path) as ErrNoProcess when the process
// is gone.
func (p Proc) rootErr(err error) error {
	if errors.Is(err, syscall.ESRCH) || (errors.Is(err, fs.ErrNotExist) && !p.Exists()) {
		return p.wrap("root", err)
	}
	return err
}

// OpenMapping opens the file behind a file mapping, as the target sees it:
// the main program through /proc/PID/exe, any other file inside the
// target's root (OpenFile), and, when that path leads elsewhere (the file was
// deleted or replaced), through /proc/PID/map_files. The opened file's
// inode is checked against the mapping's. It returns the file and the
// path it was opened by.
func (p Proc) OpenMapping(m Mapping) (*os.File, string, error) {
	if !m.IsFile() {
		return nil, "", fmt.Errorf("opening mapping %#x-%#x %q: not a file mapping", m.Start, m.End, m.Path)
	}
	var firstErr error
	try := func(path string) *os.File {
		var f *os.File
		var err error
		if in, ok := strings.CutPrefix(path, p.Path("root")); ok {
			f, err = p.OpenFile(in)
		} else if f, err = os.Open(path); err != nil {
			err = p.wrap(strings.TrimPrefix(path, p.Path("")), err)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return nil
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == m.Inode {
			return f
		}
		f.Close()
		return nil
	}
	if f := try(p.Path("exe")); f != nil {
		return f, p.Path("exe"), nil
	}
	if !m.Deleted {
		if f := try(p.Path("root") + p.TargetPath(m.Path)); f != nil {
			return f, p.Path("root") + p.TargetPath(m.Path), nil
		}
	}
	mf := p.Path(fmt.Sprintf("map_files/%x-%x", m.Start, m.End))
	if f := try(mf); f != nil {
		return f, mf, nil
	}
	if firstErr != nil && errors.Is(firstErr, ErrNoProcess) {
		return nil, "", fmt.Errorf("opening %s: %w", m.Path, firstErr)
	}
	if firstErr != nil && errors.Is(firstErr, os.ErrPermission) {
		return nil, "", fmt.Errorf("opening %s: %w", m.Path, firstErr)
	}
	return nil, "", fmt.Errorf("opening %s (inode %d) of process %d: %w", m.Path, m.Inode, p.PID, ErrFileMismatch)
}

// TargetPath turns a path as pyglass sees it (from /proc/PID/exe or maps)
// into the path as the process sees it: for a process in a chroot below
// pyglass's root, the kernel shows paths with the chroot's prefix. Paths
// outside the process's root, and processes whose root is pyglass's, are
// returned unchanged.
func (p Proc) TargetPath(hostPath string) string {
	root, err := os.Readlink(p.Path("root"))
	if err != nil || root == "/" || root == "" || !strings.HasPrefix(hostPath, root+"/") {
		return hostPath
	}
	return hostPath[len(root):]
}
