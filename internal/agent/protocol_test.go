package agent

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	for _, p := range [][]byte{nil, []byte("x=1"), bytes.Repeat([]byte{0xff}, 70000)} {
		if err := WriteFrame(&b, FrameParam, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{0, 3, 70000} {
		typ, p, err := ReadFrame(&b)
		if err != nil || typ != FrameParam || len(p) != want {
			t.Fatalf("got %q %d %v, want %d bytes", typ, len(p), err, want)
		}
	}
	if _, _, err := ReadFrame(&b); err != io.EOF {
		t.Errorf("at end: %v, want io.EOF", err)
	}
}

func TestFrameLimits(t *testing.T) {
	if _, _, err := ReadFrame(bytes.NewReader([]byte{'o', 0x04, 0, 0, 1})); !errors.Is(err, ErrProtocol) {
		t.Errorf("oversized frame: %v, want ErrProtocol", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{'o', 0, 0, 0, 5, 'a'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: %v, want io.ErrUnexpectedEOF", err)
	}
	if err := WriteFrame(io.Discard, 'o', make([]byte, MaxFrame+1)); !errors.Is(err, ErrProtocol) {
		t.Errorf("writing oversized frame: %v, want ErrProtocol", err)
	}
}

func TestParseHello(t *testing.T) {
	h, err := parseHello([]byte("protocol=1\npid=12\ntid=13\nident=140000\nversion=3.11.7\nhexversion=51054576\nexecutable=/usr/bin/py=thon"))
	if err != nil {
		t.Fatal(err)
	}
	want := Hello{Protocol: 1, PID: 12, TID: 13, Ident: 140000, Version: "3.11.7", HexVersion: 51054576, Executable: "/usr/bin/py=thon"}
	if h != want {
		t.Errorf("got %+v want %+v", h, want)
	}
	if _, err := parseHello([]byte("protocol=2")); !errors.Is(err, ErrProtocol) {
		t.Errorf("protocol 2: %v", err)
	}
	if _, err := parseHello([]byte("protocol=1\npid=x")); !errors.Is(err, ErrProtocol) {
		t.Errorf("bad pid: %v", err)
	}
}

// TestPathLiteral evaluates the quoted path with every interpreter.
func TestPathLiteral(t *testing.T) {
	path := "/tmp/a 'b' \\c \"d\" \u00e9 \xff\x01"
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		code := "import sys\np = " + pyPathLiteral(path) + "\n" +
			"b = p if isinstance(p, bytes) else p.encode('utf-8', 'surrogateescape')\n" +
			"getattr(sys.stdout, 'buffer', sys.stdout).write(b)\n"
		out, err := py.Command("-c", code).CombinedOutput()
		if err != nil || string(out) != path {
			t.Errorf("got %q (%v), want %q", out, err, path)
		}
		if strings.Contains(Bootstrap(path), "\n\n") {
			t.Errorf("bootstrap has an empty line")
		}
	})
}
