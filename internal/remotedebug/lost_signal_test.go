package remotedebug_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/remotedebug"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

// busyInC is a main thread that spends its time in sum(), C code that
// never looks at the eval breaker, about a second a call; its SIGUSR1
// handler writes a marker.
const busyInC = `
import os, signal, sys, time
def handler(sig, frame):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "handler.marker"), "w") as f:
        f.write("ran")
signal.signal(signal.SIGUSR1, handler)
n = 1 << 16
while True:
    t = time.perf_counter()
    sum(range(n))
    d = time.perf_counter() - t
    if d > 0.05:
        break
    n *= 2
n = int(n / d)
print("READY")
sys.stdout.flush()
while True:
    sum(range(n))
`

// signalMeanwhile plays a signal that comes between Request's read of the
// eval_breaker byte and its write: after the read, it sends SIGUSR1 and
// waits until the target's C handler has set the signals-pending bit
// (bit 1), then hands Request the byte as it was before.
type signalMeanwhile struct {
	remotedebug.ReadWriter
	t       *testing.T
	pid     int
	breaker uint64
	handler string // the Python handler's marker, on the host
	played  bool
	tooLate bool // the handler ran before Request wrote the byte
}

func (r *signalMeanwhile) ReadAt(p []byte, addr uint64) (int, error) {
	n, err := r.ReadWriter.ReadAt(p, addr)
	if err != nil || addr != r.breaker || len(p) != 1 || r.played {
		return n, err
	}
	if err := syscall.Tgkill(r.pid, r.pid, syscall.SIGUSR1); err != nil {
		r.t.Fatal(err)
	}
	testenv.WaitUntil(r.t, 5*time.Second, "the signals-pending bit", func() bool {
		b, err := memory.U8(r.ReadWriter, r.breaker)
		return err == nil && b&2 != 0
	})
	r.played = true
	return n, nil // p holds the byte as read before the signal
}

func (r *signalMeanwhile) WriteAt(p []byte, addr uint64) (int, error) {
	if addr == r.breaker {
		if _, err := os.Stat(r.handler); err == nil {
			r.tooLate = true
		}
	}
	return r.ReadWriter.WriteAt(p, addr)
}

// TestRequestSignalMeanwhile: a signal that comes between Request's read
// of the eval_breaker byte and its write still has its Python handler
// run. Before, the write cleared the bit the signal had set, and with
// the main thread busy in Python and C that checks signals nowhere else,
// the handler never ran (a service's SIGTERM handler, say).
func TestRequestSignalMeanwhile(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		tt := start(t, in, busyInC)
		// READY comes as the main thread is still printing it: wait until
		// it has run 50 ms more, in sum().
		cpu := testenv.CPUTime(tt.tg.PID, tt.tg.PID)
		testenv.WaitUntil(t, 10*time.Second, "the main thread in sum()", func() bool {
			return testenv.CPUTime(tt.tg.PID, tt.tg.PID)-cpu > 50*time.Millisecond
		})
		main, err := remotedebug.MainThread(tt.mem, tt.runtime)
		if err != nil {
			t.Fatal(err)
		}
		breaker, err := remotedebug.EvalBreakerAddr(tt.mem, tt.runtime, main)
		if err != nil {
			t.Fatal(err)
		}
		handler := filepath.Join(tt.hostDir, "handler.marker")
		rw := &signalMeanwhile{ReadWriter: tt.mem, t: t, pid: tt.tg.PID, breaker: breaker, handler: handler}
		// A script that does nothing: with one that wrote a file, the
		// handler was seen to run anyway (something on that path checks
		// the signals), which hid the loss.
		path := filepath.Join(tt.dir, "nothing.py")
		if err := os.WriteFile(filepath.Join(tt.hostDir, "nothing.py"), []byte("x = 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := remotedebug.Request(rw, tt.runtime, main, path); err != nil {
			t.Fatal(err)
		}
		if !rw.played {
			t.Fatal("Request did not read the eval_breaker byte the test plays the race on")
		}
		if rw.tooLate {
			testenv.Skipf(t, "the main thread left sum() and ran the handler before Request wrote the byte: the race was not played this run")
		}
		testenv.WaitUntil(t, 10*time.Second, "the main thread took the request", func() bool {
			p, err := remotedebug.Pending(tt.mem, tt.runtime, main)
			return err == nil && !p
		})
		if _, ok := waitMarker(handler, runBound); !ok {
			b, _ := memory.U8(tt.mem, breaker)
			t.Fatalf("the SIGUSR1 handler did not run within %v of the request taken (eval_breaker byte %#x): the signal's pending bit was lost", runBound, b)
		}
		healthy(t, tt)
	})
}
