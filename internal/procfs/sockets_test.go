package procfs

import (
	"fmt"
	"net"
	"strconv"
	"strings"
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
