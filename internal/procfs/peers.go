package procfs

import (
	"os"
	"strconv"
	"strings"
)

// FDHolder is a file descriptor some process has open.
type FDHolder struct {
	PID, FD int
}

// Bounds of Holders' scan of /proc.
const (
	maxScanProcs = 8192
	maxScanFDs   = 4096
)

// Holders lists the file descriptors (at most max) of every process
// under root ("/proc") whose link reads link ("pipe:[123]",
// "socket:[456]"): who holds the other end of a pipe, or a socket. The
// links are read, never followed; processes it may not look into are
// skipped.
func Holders(root, link string, max int) []FDHolder {
	var out []FDHolder
	procs, _ := os.ReadDir(root)
	for i, d := range procs {
		if i >= maxScanProcs || len(out) >= max {
			break
		}
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := root + "/" + d.Name() + "/fd/"
		fds, _ := os.ReadDir(dir)
		for j, f := range fds {
			if j >= maxScanFDs || len(out) >= max {
				break
			}
			if l, err := os.Readlink(dir + f.Name()); err == nil && l == link {
				if fd, err := strconv.Atoi(f.Name()); err == nil {
					out = append(out, FDHolder{PID: pid, FD: fd})
				}
			}
		}
	}
	return out
}

// TCPPeer returns the inode of the other end of the TCP socket of inode
// ino when both ends are in the process's network namespace (a
// connection over loopback): the socket whose local and remote addresses
// are ino's swapped; ok is false otherwise.
func (p Proc) TCPPeer(ino uint64) (peer uint64, ok bool) {
	want := strconv.FormatUint(ino, 10)
	for _, proto := range []string{"tcp", "tcp6"} {
		b, err := p.readFile("net/" + proto)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		var local, remote string
		for _, line := range lines[1:] {
			if f := strings.Fields(line); len(f) >= 10 && f[9] == want {
				local, remote = f[1], f[2]
			}
		}
		if local == "" {
			continue
		}
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[1] != remote || f[2] != local || f[9] == want {
				continue
			}
			if n, err := strconv.ParseUint(f[9], 10, 64); err == nil && n != 0 {
				return n, true
			}
		}
	}
	return 0, false
}

// maxEpollFDs bounds how many watched descriptors EpollFDs returns.
const maxEpollFDs = 64

// EpollFDs returns the descriptors the epoll instance of descriptor fd
// watches, from /proc/PID/fdinfo/FD ("tfd: 5 events: 19 ..." lines).
func (p Proc) EpollFDs(fd int) ([]int, error) {
	b, err := p.readFile("fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return nil, err
	}
	return parseEpollFDs(string(b)), nil
}

func parseEpollFDs(s string) []int {
	var out []int
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "tfd:" || len(out) >= maxEpollFDs {
			continue
		}
		if n, err := strconv.Atoi(f[1]); err == nil && n >= 0 {
			out = append(out, n)
		}
	}
	return out
}
