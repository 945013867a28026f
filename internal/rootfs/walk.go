package rootfs

import (
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noOpenat2 is set once the kernel said it has no openat2 (before Linux
// 5.6, or a seccomp filter that refuses it): walk is used from then on.
var noOpenat2 atomic.Bool

// maxSymlinks bounds the symlinks one walk follows, as the kernel does.
const maxSymlinks = 40

// walk resolves path inside the root fd as openat2(RESOLVE_IN_ROOT) would,
// one component at a time, for kernels without openat2: every component
// is opened with O_PATH|O_NOFOLLOW relative to the directory fd before
// it; a symlink is read and its target walked in its place (an absolute
// one from the root); ".." pops the directories walked so far and never
// goes above the root, whatever was renamed meanwhile (the kernel's ".."
// is never used). A /proc magic link is a symlink here: its text is walked
// inside the root, never jumped through. The last component, once it is
// not a symlink, is reopened with flags through /proc/self/fd.
func walk(root int, path string, flags int) (int, error) {
	rootDup, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	stack := []int{rootDup} // stack[0] is the root
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	todo := strings.Split(path, "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			if len(todo) == 0 {
				// "/" or a trailing "/.": the directory itself.
				return reopen(stack[len(stack)-1], flags)
			}
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
			if len(todo) == 0 {
				return reopen(stack[len(stack)-1], flags)
			}
			continue
		}
		fd, err := unix.Openat(stack[len(stack)-1], c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			links++
			target, err := readlink(fd)
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			if links > maxSymlinks {
				return -1, unix.ELOOP
			}
			if target == "" {
				return -1, unix.ENOENT
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range stack[1:] {
					unix.Close(d)
				}
				stack = stack[:1]
			}
			todo = append(strings.Split(target, "/"), todo...)
		case unix.S_IFDIR:
			stack = append(stack, fd)
			if len(todo) == 0 {
				return reopen(fd, flags)
			}
		default:
			if len(todo) > 0 {
				unix.Close(fd)
				return -1, unix.ENOTDIR
			}
			defer unix.Close(fd)
			return reopen(fd, flags)
		}
	}
	return reopen(stack[len(stack)-1], flags)
}

// reopen opens the file an O_PATH fd names, with flags, through its
// /proc/self/fd link (the file itself, whatever its path is now).
func reopen(fd, flags int) (int, error) {
	return unix.Open("/proc/self/fd/"+strconv.Itoa(fd), flags|unix.O_CLOEXEC, 0)
}

// readlink reads the target of the symlink open as an O_PATH fd.
func readlink(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
