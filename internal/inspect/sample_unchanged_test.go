package inspect

import (
	"testing"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// TestUnchangedAfterNoFrame: a thread whose current frame goes from X to
// none and back to X, the memory its walk at X read unchanged, is not
// taken as unchanged at X again: its stack was emptied meanwhile, and
// the copy saved by the walk at X no longer goes with it (it was, with
// an empty stack, before resolve and the empty stacks dropped the copy).
func TestUnchangedAfterNoFrame(t *testing.T) {
	l, err := layout.For(3, 13)
	if err != nil {
		t.Fatal(err)
	}
	const tstate, frame = 0x10000, 0x20000
	var mem memory.Fake
	ts := make([]byte, 4096)
	fr := make([]byte, 4096)
	for i := range fr {
		fr[i] = byte(i)
	}
	mem.Map(tstate, ts)
	mem.Map(frame, fr)
	setTop := func(v uint64) { memory.Order.PutUint64(ts[l.TstateCurrentFrame:], v) }

	pc := newSampleCache(&mem, 1)
	s := &sampler{m: &Memory{r: &mem, l: l}, pc: pc, depth: 512, stats: &SampleStats{Lost: map[string]int64{}}, unreadable: map[uint64]bool{}}
	s.cs = cpython.NewSampler(pc, l)
	th := &sampledThread{tstate: tstate}
	// As save leaves it after a walk of the stack at frame.
	th.top = frame
	th.hint = []pageRange{{frame, 0, 128}}
	th.saved = append([]byte{}, fr[:128]...)
	th.savedTop, th.savedOK = frame, true
	th.resolved = []SampledFrame{{Function: "worker", File: "/w.py", Line: 3}}

	setTop(0)
	s.pc.reset()
	s.readQuick([]*sampledThread{th}, false)
	if len(th.resolved) != 0 {
		t.Fatalf("no current frame: stack %v, want none", th.resolved)
	}
	setTop(frame)
	s.pc.reset()
	s.readQuick([]*sampledThread{th}, false)
	if s.stats.Unchanged != 0 {
		t.Errorf("back at %#x after no frame: taken as unchanged (stack %v), want walked", frame, th.resolved)
	}
}
