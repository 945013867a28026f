package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestSocket names real TCP sockets of this process (IPv4 and IPv6) by
// their addresses, from the inode /proc/self/fd gives.
func TestSocket(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v", addr, err)
			continue
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p := Self()
		what, err := p.FD(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		ino, ok := strings.CutPrefix(what, "socket:[")
		if !ok {
			t.Fatalf("fd is %q, want a socket", what)
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := p.NetTables().Socket(n)
		want := fmt.Sprintf("tcp %s -> %s ESTABLISHED", c.LocalAddr(), ln.Addr())
		if !ok || got != want {
			t.Errorf("Socket(%d) = %q, %v; want %q", n, got, ok, want)
		}
	}
	if _, ok := Self().NetTables().Socket(1); ok {
		t.Errorf("inode 1 found as a socket")
	}
}

// TestPeers: the other end of a loopback TCP connection is found from
// /proc/net/tcp and its holder by scanning /proc; a pipe's two ends are
// both found.
func TestPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cf, _ := c.(*net.TCPConn).File()
	sf, _ := s.(*net.TCPConn).File()
	defer cf.Close()
	defer sf.Close()
	inode := func(fd uintptr) uint64 {
		what, err := Self().FD(int(fd))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(what, "socket:["), "]"), 10, 64)
		if err != nil {
			t.Fatalf("%q: %v", what, err)
		}
		return n
	}
	ci, si := inode(cf.Fd()), inode(sf.Fd())
	// One NetTables reads each table once: a connection made after its
	// first question is not in it, and is in a fresh one.
	nt := Self().NetTables()
	if peer, ok := nt.TCPPeer(ci); !ok || peer != si {
		t.Errorf("TCPPeer(%d) = %d, %v; want %d", ci, peer, ok, si)
	}
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2f, _ := c2.(*net.TCPConn).File()
	defer c2f.Close()
	if _, ok := nt.Socket(inode(c2f.Fd())); ok {
		t.Errorf("a connection made after the tables were read was found: they were read again")
	}
	if _, ok := Self().NetTables().Socket(inode(c2f.Fd())); !ok {
		t.Errorf("a fresh NetTables does not find the new connection")
	}
	if peer, ok := Self().NetTables().TCPPeer(ci); !ok || peer != si {
		t.Errorf("TCPPeer(%d) = %d, %v; want %d", ci, peer, ok, si)
	}
	if peer, ok := Self().NetTables().TCPPeer(si); !ok || peer != ci {
		t.Errorf("TCPPeer(%d) = %d, %v; want %d", si, peer, ok, ci)
	}
	if _, ok := Self().NetTables().TCPPeer(1); ok {
		t.Errorf("inode 1 has a peer")
	}
	h, complete := NewFDIndex("/proc", time.Minute).Holders(fmt.Sprintf("socket:[%d]", si), 10, FDHolder{})
	if !complete {
		t.Errorf("a scan of this machine's /proc with a minute to spend stopped early")
	}
	found := false
	for _, x := range h {
		found = found || x.PID == os.Getpid() && x.FD == int(sf.Fd())
	}
	if !found {
		t.Errorf("Holders of socket %d: %v, want pid %d fd %d among them", si, h, os.Getpid(), sf.Fd())
	}
	_, _, link := testPipe(t)
	if h, _ := NewFDIndex("/proc", time.Minute).Holders(link, 10, FDHolder{}); len(h) != 2 {
		t.Errorf("Holders of %s: %v, want both ends", link, h)
	}
}

// testPipe makes a pipe closed at the test's end, and gives its link
// ("pipe:[N]").
func testPipe(t *testing.T) (r, w *os.File, link string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	link, err = Self().FD(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return r, w, link
}

// TestFDIndexScansOnce: the index reads /proc at its first question
// only (a pipe made after it is not in it), the asker's own descriptor
// is left out, and a scan without time to spend says it is incomplete.
func TestFDIndexScansOnce(t *testing.T) {
	x := NewFDIndex("/proc", time.Minute)
	r1, w1, link1 := testPipe(t)
	me := os.Getpid()
	if h, complete := x.Holders(link1, 10, FDHolder{}); len(h) != 2 || !complete {
		t.Fatalf("Holders of %s: %v (complete %v), want both ends", link1, h, complete)
	}
	if h, _ := x.Holders(link1, 10, FDHolder{PID: me, FD: int(r1.Fd())}); len(h) != 1 || h[0] != (FDHolder{PID: me, FD: int(w1.Fd())}) {
		t.Errorf("Holders of %s but the read end: %v, want the write end %d", link1, h, w1.Fd())
	}
	_, _, link2 := testPipe(t)
	if h, _ := x.Holders(link2, 10, FDHolder{}); len(h) != 0 {
		t.Errorf("a pipe made after the scan was found: %v (the index scanned /proc again)", h)
	}
	if h, _ := NewFDIndex("/proc", time.Minute).Holders(link2, 1, FDHolder{}); len(h) != 1 {
		t.Errorf("Holders with max 1: %v", h)
	}
	if _, complete := NewFDIndex("/proc", -time.Second).Holders(link1, 10, FDHolder{}); complete {
		t.Errorf("a scan with no time to spend says it is complete")
	}
}

// childWriting starts a child whose stdout is a pipe and returns the
// pipe's read end, which only the test holds; both go when it ends.
func childWriting(t *testing.T) (*os.File, *exec.Cmd) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cmd := exec.Command("sleep", "60")
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	w.Close()
	return r, cmd
}

// TestFDIndexNearFirst: the other end of a pipe held by a near process
// (here a child) is found there without the scan of every process (a
// zero budget would make that scan incomplete); a link the near
// processes do not have falls back to the scan.
func TestFDIndexNearFirst(t *testing.T) {
	r, cmd := childWriting(t)
	if kids := Self().Children(); !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("Children() = %v, want the child %d among them", kids, cmd.Process.Pid)
	}
	link, _ := Self().FD(int(r.Fd()))
	me := FDHolder{PID: os.Getpid(), FD: int(r.Fd())}
	x := NewFDIndex("/proc", -time.Second, os.Getpid(), cmd.Process.Pid)
	h, complete := x.Holders(link, 10, me)
	if len(h) != 1 || h[0] != (FDHolder{PID: cmd.Process.Pid, FD: 1}) || !complete {
		t.Errorf("Holders of %s near us: %v (complete %v), want the child's fd 1", link, h, complete)
	}
	r2, _, link2 := testPipe(t)
	if _, complete := x.Holders(link2, 10, FDHolder{PID: os.Getpid(), FD: int(r2.Fd())}); complete {
		t.Errorf("a link held only by the asker: the scan of every process (no time to spend) says it is complete")
	}
}

// TestEpollFDs: the descriptors a real epoll instance watches, and
// malformed fdinfo lines skipped.
func TestEpollFDs(t *testing.T) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Skipf("epoll: %v", err)
	}
	defer syscall.Close(ep)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, fd := range []int{int(r.Fd()), int(w.Fd())} {
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Self().EpollFDs(ep)
	slices.Sort(got)
	if want := []int{int(r.Fd()), int(w.Fd())}; err != nil || !slices.Equal(got, want) {
		t.Errorf("EpollFDs = %v, %v; want %v", got, err, want)
	}
	if got := parseEpollFDs("pos: 0\ntfd: x events: 1\ntfd:\ntfd: -3 events: 1\ntfd: 7 events: 19\n"); !slices.Equal(got, []int{7}) {
		t.Errorf("parseEpollFDs = %v, want [7]", got)
	}
}

// TestUnixPeer: the kernel names the other end of a real socketpair, and
// malformed answers are refused.
func TestUnixPeer(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	var ino [2]uint64
	for i, fd := range fds {
		what, _ := Self().FD(fd)
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(what, "socket:["), "]"), 10, 64)
		if err != nil {
			t.Fatalf("%q: %v", what, err)
		}
		ino[i] = n
	}
	peer, ok := UnixPeer(ino[0])
	if !ok {
		t.Skipf("the kernel's sock_diag does not answer for Unix sockets here")
	}
	if peer != ino[1] {
		t.Errorf("UnixPeer(%d) = %d, want %d", ino[0], peer, ino[1])
	}
	for _, b := range [][]byte{nil, make([]byte, 31), make([]byte, 64)} {
		if p, ok := parseUnixPeer(b, 5); ok {
			t.Errorf("parseUnixPeer(%x) = %d, want nothing", b, p)
		}
	}
}

// TestFDIndexNearGroups: a later group of near processes is listed only
// when the groups before it lack the link: the child's end is found in
// the first group without calling the second's function; a link the
// first group lacks is looked for in the second, which is listed once.
func TestFDIndexNearGroups(t *testing.T) {
	r, cmd := childWriting(t)
	link, _ := Self().FD(int(r.Fd()))
	me := FDHolder{PID: os.Getpid(), FD: int(r.Fd())}
	listed := 0
	x := NewFDIndex("/proc", -time.Second, cmd.Process.Pid).ThenNear(func() []int {
		listed++
		return []int{os.Getpid()}
	})
	if h, complete := x.Holders(link, 10, me); len(h) != 1 || h[0] != (FDHolder{PID: cmd.Process.Pid, FD: 1}) || !complete {
		t.Errorf("Holders of %s: %v (complete %v), want the child's fd 1", link, h, complete)
	}
	if listed != 0 {
		t.Errorf("the second group was listed although the first had the link")
	}
	r2, w2, link2 := testPipe(t)
	if h, complete := x.Holders(link2, 10, FDHolder{PID: os.Getpid(), FD: int(r2.Fd())}); len(h) != 1 || h[0] != (FDHolder{PID: os.Getpid(), FD: int(w2.Fd())}) || !complete {
		t.Errorf("Holders of %s, ours only: %v (complete %v), want our write end from the second group", link2, h, complete)
	}
	x.Holders(link2, 10, FDHolder{})
	if listed != 1 {
		t.Errorf("the second group was listed %d times, want once", listed)
	}
}

// TestReadAllLargeFile: a /proc file longer than a read (maps of a
// process with many mappings is read in several) is read whole, and a
// missing file is fs.ErrNotExist with its path.
func TestReadAllLargeFile(t *testing.T) {
	var maps [][]byte
	for i := 0; i < 200; i++ { // 200 mappings: /proc/self/maps over 8 KiB
		b, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		maps = append(maps, b)
		syscall.Mmap(-1, 0, 4096, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS) // keeps them apart
	}
	defer func() {
		for _, b := range maps {
			syscall.Munmap(b)
		}
	}()
	got, err := Self().readFile("maps")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 8192 || strings.Count(string(got), "\n") < 200 {
		t.Fatalf("read %d bytes, %d lines of maps", len(got), strings.Count(string(got), "\n"))
	}
	// The two reads may differ by what the runtime mapped between them:
	// compare the lines of the test's mappings.
	for _, b := range maps {
		start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&b[0])))
		if !strings.Contains(string(got), "\n"+start) || !strings.Contains(string(want), "\n"+start) {
			t.Errorf("mapping %s missing from the read", start)
		}
	}
	if _, err := readAll("/proc/self/no-such-file"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/proc/self/no-such-file") {
		t.Errorf("missing file: %v, want ErrNotExist naming it", err)
	}
}
