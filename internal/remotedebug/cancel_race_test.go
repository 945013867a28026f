package remotedebug_test

import (
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/remotedebug"
	"github.com/pyglass/pyglass/internal/testenv"
)

// takeOnClear plays the target's thread taking a request at the worst
// moment: as Cancel empties the script path, it clears
// debugger_pending_call, as _PyRunRemoteDebugger does before it copies
// the path.
type takeOnClear struct {
	remotedebug.ReadWriter
	pending uint64
	took    bool
}

func (w *takeOnClear) WriteAt(p []byte, addr uint64) (int, error) {
	n, err := w.ReadWriter.WriteAt(p, addr)
	if len(p) == 1 && p[0] == 0 && !w.took {
		w.took = true
		w.ReadWriter.WriteAt(make([]byte, 4), w.pending)
	}
	return n, err
}

// TestCancelRace: a request the thread takes between Cancel's emptying of
// the path and its second look at the flag is Unsure (the thread may have
// copied the path or the empty one), not Taken, which made pyglass wait
// its whole timeout for an agent that never came. The target, whose flag
// was cleared with an empty path, runs nothing and stays healthy.
func TestCancelRace(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		tt := start(t, in, "import time\nprint('READY')\nwhile True:\n    time.sleep(0.3)\n")
		main, err := remotedebug.MainThread(tt.mem, tt.runtime)
		if err != nil {
			t.Fatal(err)
		}
		pending, err := remotedebug.PendingAddr(tt.mem, tt.runtime, main)
		if err != nil {
			t.Fatal(err)
		}
		if err := remotedebug.Request(tt.mem, tt.runtime, main, "/nonexistent/pyglass-never-runs.py"); err != nil {
			t.Fatal(err)
		}
		rw := &takeOnClear{ReadWriter: tt.mem, pending: pending}
		out, err := remotedebug.Cancel(rw, tt.runtime, main)
		if err != nil {
			t.Fatal(err)
		}
		if !rw.took {
			testenv.Skipf(t, "the thread took the request before Cancel looked (it woke up in between); cannot play the race this run")
		}
		if out != remotedebug.Unsure {
			t.Errorf("Cancel raced by the thread = %d, want Unsure (%d)", out, remotedebug.Unsure)
		}
		time.Sleep(700 * time.Millisecond) // two wake-ups of the main thread
		healthy(t, tt)
	})
}
