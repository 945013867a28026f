package remotedebug_test

import (
	"testing"

	"github.com/pyglass/pyglass/internal/remotedebug"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

// servedDropRequest plays the target between Request's read of the
// eval_breaker byte and its write: the read sees a GIL drop request
// (bit 0) that another thread made, and which that thread's taking of the
// GIL has cleared again by the time of the write.
type servedDropRequest struct {
	remotedebug.ReadWriter
	breaker uint64
	played  bool
}

func (r *servedDropRequest) ReadAt(p []byte, addr uint64) (int, error) {
	n, err := r.ReadWriter.ReadAt(p, addr)
	if err == nil && addr == r.breaker && len(p) == 1 {
		p[0] |= 1
		r.played = true
	}
	return n, err
}

// TestRequestStaleDropRequest: a GIL drop request that Request read, and
// the target served before Request wrote the byte back, is not written
// back. Before, it was: the busy thread, the GIL's only user, then found
// the bit set as it dropped the GIL for the request and waited in
// drop_gil for another thread to take the GIL, forever, with the script
// never run.
func TestRequestStaleDropRequest(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		tt := start(t, in, busyWorker)
		want := readyField(t, tt.tg, "tid")
		tt.waitOnlyRunning(t, want)
		pick, err := remotedebug.PickThread(tt.mem, tt.tg.PID, tt.runtime)
		if err != nil {
			t.Fatal(err)
		}
		if pick.Thread.NativeID != want {
			t.Fatalf("picked native id %d, want the busy thread %d", pick.Thread.NativeID, want)
		}
		breaker, err := remotedebug.EvalBreakerAddr(tt.mem, tt.runtime, pick.Thread.Addr)
		if err != nil {
			t.Fatal(err)
		}
		rw := &servedDropRequest{ReadWriter: tt.mem, breaker: breaker}
		path, marker := tt.script(t, "run")
		if err := remotedebug.Request(rw, tt.runtime, pick.Thread.Addr, path); err != nil {
			t.Fatal(err)
		}
		if !rw.played {
			t.Fatal("Request did not read the eval_breaker byte the test plays the race on")
		}
		if _, ok := waitMarker(marker, runBound); !ok {
			b, _ := memory.U8(tt.mem, breaker)
			t.Fatalf("the script did not run within %v: the busy thread is in %s, eval_breaker byte %#x",
				runBound, threadWait(tt.tg.PID, want), b)
		}
		healthy(t, tt)
	})
}
