package agent

import (
	"bufio"
	"bytes"
	"io"
	"runtime"
	"testing"
)

// frame is one frame as the agent sends it.
func frame(typ byte, payload string) []byte {
	var b bytes.Buffer
	WriteFrame(&b, typ, []byte(payload))
	return b.Bytes()
}

// FuzzAgentStream: the agent runs in the target, which may be hostile:
// whatever bytes come from its end of the connection, reading its hello
// and then its output until the exit status ends with an answer or an
// error, never a panic, and takes memory for the bytes that came, not for
// the lengths the frames claim.
func FuzzAgentStream(f *testing.F) {
	hello := frame(FrameHello, "protocol=1\npid=42\ntid=43\nident=140000\nversion=3.13.0\nhexversion=51183856\nexecutable=/usr/bin/python3\n")
	f.Add(hello)
	f.Add(bytes.Join([][]byte{hello, frame(FrameStdout, "hi\n"), frame(FrameStderr, "Traceback\n"), frame(FrameExit, "0")}, nil))
	f.Add(bytes.Join([][]byte{hello, frame(FramePrompt, PromptPrimary), frame(FrameExit, "-1")}, nil))
	f.Add(bytes.Join([][]byte{hello, frame(FrameExit, "x")}, nil))
	f.Add(bytes.Join([][]byte{hello, {FrameStdout, 0x03, 0xff, 0xff, 0xff}}, nil)) // claims 64 MiB, sends none
	f.Add([]byte{FrameHello, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &Conn{r: bufio.NewReader(bytes.NewReader(b))}
		typ, payload, err := ReadFrame(c.r)
		if err != nil || typ != FrameHello {
			return
		}
		if len(payload) > len(b) {
			t.Fatalf("a hello of %d bytes from a stream of %d", len(payload), len(b))
		}
		if c.hello, err = parseHello(payload); err != nil {
			return
		}
		for i := 0; i < 1000; i++ {
			_, done, err := c.ReadOutput(io.Discard, io.Discard)
			if err != nil {
				return
			}
			if done {
				if _, ok := c.ExitStatus(); !ok {
					t.Fatal("done without an exit status")
				}
				return
			}
		}
	})
}

// TestReadFrameClaimsOnly: a frame that claims more bytes than come is an
// error, after taking memory for the bytes that came only.
func TestReadFrameClaimsOnly(t *testing.T) {
	b := []byte{FrameStdout, 0x03, 0xff, 0xff, 0xff, 'a', 'b'}
	var before, after runtimeMem
	before.read()
	for i := 0; i < 50; i++ {
		if _, _, err := ReadFrame(bytes.NewReader(b)); err == nil {
			t.Fatal("a frame claiming 64 MiB with 2 bytes read whole")
		}
	}
	after.read()
	if d := after.total - before.total; d > 50<<20 {
		t.Errorf("50 frames claiming 64 MiB each, 2 bytes sent, took %d MiB", d>>20)
	}
}

// runtimeMem is the Go heap's cumulative allocation.
type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.total = ms.TotalAlloc
}
