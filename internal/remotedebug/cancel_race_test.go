package remotedebug

import (
	"testing"
	"time"

	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/target/live"
)

// takeOnClear plays the target's thread taking a request at the worst
// moment: as Cancel empties the script path, it clears
// debugger_pending_call, as _PyRunRemoteDebugger does before it copies
// the path.
type takeOnClear struct {
	ReadWriter
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
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 14) {
			testenv.Skipf(t, "%s has no PEP 768 remote execution (3.14+)", in.Label)
		}
		tg := testenv.Start(t, in, "import time\nprint('READY')\nwhile True:\n    time.sleep(0.3)\n")
		img, err := layouttest.FindImage(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		rt := img.Sections[".PyRuntime"][0]
		mem, err := live.Open(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		main, err := MainThread(mem, rt)
		if err != nil {
			t.Fatal(err)
		}
		o, err := readOffsets(mem, rt)
		if err != nil {
			t.Fatal(err)
		}
		if err := Request(mem, rt, main, "/nonexistent/pyglass-never-runs.py"); err != nil {
			t.Fatal(err)
		}
		rw := &takeOnClear{ReadWriter: mem, pending: o.pendingAddr(main)}
		out, err := Cancel(rw, rt, main)
		if err != nil {
			t.Fatal(err)
		}
		if !rw.took {
			t.Skip("the thread took the request before Cancel looked (it woke up in between); cannot play the race this run")
		}
		if out != Unsure {
			t.Errorf("Cancel raced by the thread = %d, want Unsure (%d)", out, Unsure)
		}
		time.Sleep(700 * time.Millisecond) // two wake-ups of the main thread
		if err := tg.Healthy(); err != nil {
			t.Fatal(err)
		}
	})
}
