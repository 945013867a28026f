package procfs

import (
	"errors"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FDHolder is a file descriptor some process has open.
type FDHolder struct {
	PID, FD int
}

// Bounds of an FDIndex's scan of /proc.
const (
	maxScanProcs = 8192
	maxScanFDs   = 4096
	// maxHoldersPerLink bounds the holders kept for one pipe or socket.
	maxHoldersPerLink = 8
)

// FDIndex answers "who has this pipe or socket open" for many links
// with one scan of /proc: a report that names the other end of every
// blocked thread's descriptors would otherwise read every process's
// descriptors once per descriptor (a service with 50 threads in recv on
// a host of 1,000 processes: millions of readlinks). The scan happens
// at the first question, reads the links (never follows them) of every
// process it may look into, keeps those of pipes and sockets, and stops
// at its bounds or when its time budget is spent; Holders then says the
// answer may be partial.
type FDIndex struct {
	root   string
	budget time.Duration
	// groups are the processes looked into first, in turn: a group is
	// read only when those before it do not hold the link asked for (the
	// asker and its parent, then their other children: reading a
	// process's children is a file per thread).
	groups  []func() []int
	added   map[int]bool
	byNear  map[string][]FDHolder
	scanned bool
	// complete: the scan of every process read them all.
	complete bool
	byLink   map[string][]FDHolder
}

// NewFDIndex returns an index of the descriptors under root ("/proc"),
// scanned for at most budget when the processes near (the asker, its
// parent and children: where the other end of a pipe or socket usually
// is) do not have the link asked for.
func NewFDIndex(root string, budget time.Duration, near ...int) *FDIndex {
	x := &FDIndex{root: root, budget: budget, added: map[int]bool{}, byNear: map[string][]FDHolder{}}
	return x.ThenNear(func() []int { return near })
}

// ThenNear adds a group of near processes, listed by group when first
// needed: after the groups before it, before the scan of every process.
func (x *FDIndex) ThenNear(group func() []int) *FDIndex {
	x.groups = append(x.groups, group)
	return x
}

// Holders lists the descriptors (at most max) other than except whose
// link reads link ("pipe:[123]", "socket:[456]"): those of the first
// group of near processes that has some, else those of every process.
// complete is false when the scan of every process stopped early, so
// that others may exist.
func (x *FDIndex) Holders(link string, max int, except FDHolder) (hs []FDHolder, complete bool) {
	for {
		if hs = others(x.byNear[link], except, max); len(hs) > 0 {
			return hs, true
		}
		if len(x.groups) == 0 {
			break
		}
		group := x.groups[0]
		x.groups = x.groups[1:]
		for _, pid := range group() {
			if !x.added[pid] {
				x.added[pid] = true
				x.addProcess(x.byNear, pid)
			}
		}
	}
	if !x.scanned {
		x.scan()
	}
	return others(x.byLink[link], except, max), x.complete
}

// others returns at most max of hs, except one.
func others(hs []FDHolder, except FDHolder, max int) []FDHolder {
	var out []FDHolder
	for _, h := range hs {
		if h != except && len(out) < max {
			out = append(out, h)
		}
	}
	return out
}

func (x *FDIndex) scan() {
	x.scanned = true
	x.byLink = map[string][]FDHolder{}
	deadline := time.Now().Add(x.budget)
	procs, _ := readDirNames(x.root, maxScanProcs+1)
	sort.Strings(procs) // the order os.ReadDir gave
	x.complete = len(procs) <= maxScanProcs
	for i, d := range procs {
		if i >= maxScanProcs {
			break
		}
		if i%16 == 0 && time.Now().After(deadline) {
			x.complete = false
			return
		}
		if pid, err := strconv.Atoi(d); err == nil && pid > 0 && !x.addProcess(x.byLink, pid) {
			x.complete = false
		}
	}
}

// addProcess adds the pipes and sockets process pid has open to m; false
// when it has more descriptors than are read.
func (x *FDIndex) addProcess(m map[string][]FDHolder, pid int) bool {
	dir := x.root + "/" + strconv.Itoa(pid) + "/fd/"
	fds, _ := readDirNames(dir, maxScanFDs+1)
	sort.Strings(fds)
	all := len(fds) <= maxScanFDs
	if !all {
		fds = fds[:maxScanFDs]
	}
	for _, f := range fds {
		l, err := os.Readlink(dir + f)
		if errors.Is(err, fs.ErrPermission) {
			return all // the same for its other descriptors
		}
		if err != nil || !strings.HasPrefix(l, "pipe:[") && !strings.HasPrefix(l, "socket:[") {
			continue
		}
		fd, err := strconv.Atoi(f)
		if err != nil || len(m[l]) >= maxHoldersPerLink {
			continue
		}
		m[l] = append(m[l], FDHolder{PID: pid, FD: fd})
	}
	return all
}

// TCPPeer returns the inode of the other end of the TCP socket of inode
// ino when both ends are in the process's network namespace (a
// connection over loopback): the socket whose local and remote addresses
// are ino's swapped; ok is false otherwise.
func (t *NetTables) TCPPeer(ino uint64) (peer uint64, ok bool) {
	want := strconv.FormatUint(ino, 10)
	for _, proto := range []string{"tcp", "tcp6"} {
		lines := t.table(proto)
		var local, remote string
		for _, l := range lines {
			if l.inode == want {
				local, remote = l.local, l.remote
			}
		}
		if local == "" {
			continue
		}
		for _, l := range lines {
			if l.local != remote || l.remote != local || l.inode == want {
				continue
			}
			if n, err := strconv.ParseUint(l.inode, 10, 64); err == nil && n != 0 {
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
