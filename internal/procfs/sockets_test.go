package procfs

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
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
		got, ok := p.Socket(n)
		want := fmt.Sprintf("tcp %s -> %s ESTABLISHED", c.LocalAddr(), ln.Addr())
		if !ok || got != want {
			t.Errorf("Socket(%d) = %q, %v; want %q", n, got, ok, want)
		}
	}
	if _, ok := Self().Socket(1); ok {
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
	if peer, ok := Self().TCPPeer(ci); !ok || peer != si {
		t.Errorf("TCPPeer(%d) = %d, %v; want %d", ci, peer, ok, si)
	}
	if peer, ok := Self().TCPPeer(si); !ok || peer != ci {
		t.Errorf("TCPPeer(%d) = %d, %v; want %d", si, peer, ok, ci)
	}
	if _, ok := Self().TCPPeer(1); ok {
		t.Errorf("inode 1 has a peer")
	}
	h := Holders("/proc", fmt.Sprintf("socket:[%d]", si), 10)
	found := false
	for _, x := range h {
		found = found || x.PID == os.Getpid() && x.FD == int(sf.Fd())
	}
	if !found {
		t.Errorf("Holders of socket %d: %v, want pid %d fd %d among them", si, h, os.Getpid(), sf.Fd())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	link, _ := Self().FD(int(r.Fd()))
	if h := Holders("/proc", link, 10); len(h) != 2 {
		t.Errorf("Holders of %s: %v, want both ends", link, h)
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
