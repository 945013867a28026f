package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Namespace kinds, as named under /proc/PID/ns.
const (
	NSMount = "mnt"
	NSPID   = "pid"
	NSUser  = "user"
)

// SameNamespace reports whether the process is in the same namespace of
// the given kind ("mnt", "pid", ...) as the calling process, by comparing
// the device and inode of /proc/PID/ns/KIND and /proc/self/ns/KIND.
func (p Proc) SameNamespace(kind string) (bool, error) {
	theirs, err := os.Stat(p.Path("ns/" + kind))
	if err != nil {
		return false, p.wrap("ns/"+kind, err)
	}
	ours, err := os.Stat(p.Root + "/self/ns/" + kind)
	if err != nil {
		return false, fmt.Errorf("reading our %s namespace: %w", kind, err)
	}
	a, ok1 := theirs.Sys().(*syscall.Stat_t)
	b, ok2 := ours.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return false, fmt.Errorf("comparing %s namespaces: no inode", kind)
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// UserName returns the name of uid as the target knows it: from the
// target's /etc/passwd (resolved inside its root), else from ours, else
// the number itself.
func (p Proc) UserName(uid int) string {
	for _, open := range []func() (*os.File, error){
		func() (*os.File, error) { return p.OpenFile("/etc/passwd") },
		func() (*os.File, error) { return os.Open("/etc/passwd") },
	} {
		if b, err := readSmall(open); err == nil {
			if name, ok := LookupPasswd(b, uid); ok {
				return name
			}
		}
	}
	return strconv.Itoa(uid)
}

func readSmall(open func() (*os.File, error)) ([]byte, error) {
	f, err := open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

// LookupPasswd finds uid in the text of a passwd file.
func LookupPasswd(passwd []byte, uid int) (string, bool) {
	want := strconv.Itoa(uid)
	sc := bufio.NewScanner(bytes.NewReader(passwd))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 4)
		if len(f) >= 3 && f[2] == want && f[0] != "" {
			return f[0], true
		}
	}
	return "", false
}
