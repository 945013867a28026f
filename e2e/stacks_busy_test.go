package e2e

import (
	"context"
	"strconv"
	"testing"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestStacksNonblockingBusy: on every interpreter, a thread that calls and
// returns from functions all the time is read without pausing it 300
// times: a read that meets its frame chain being changed is made again,
// so every dump has the thread, read, from <module> on (a few exceptions
// tolerated); the binary exits 0 every time.
func TestStacksNonblockingBusy(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_busy.py"))
		p, err := pyglass.Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		failed, truncated := 0, 0
		for n := 0; n < 300; n++ {
			d, err := p.Stacks(context.Background(), pyglass.StackOptions{NonBlocking: true})
			if err != nil {
				t.Fatalf("dump %d: %v", n, err)
			}
			if len(d.Threads) != 1 {
				t.Fatalf("dump %d: %d threads: %+v", n, len(d.Threads), d.Threads)
			}
			th := d.Threads[0]
			switch {
			case th.Error != "":
				failed++
				t.Logf("dump %d: error %q, frames %s", n, th.Error, fmtFrames(th.Frames))
			case len(th.Frames) < 2 || th.Frames[0].Function != "<module>":
				truncated++
				t.Logf("dump %d: a chain that ends early: %s", n, fmtFrames(th.Frames))
			}
		}
		// Two reads that agree can still both be torn the same way,
		// rarely: a few short chains or unreadable reads (a frame
		// freed between them) in 300 are tolerated (without the
		// rereads, 3 to 65% of the dumps fail or are cut short).
		if failed > 3 || truncated > 3 {
			t.Errorf("of 300 dumps without pausing, %d could not read the busy thread and %d cut its chain short", failed, truncated)
		}
		for n := 0; n < 10; n++ {
			r := run(t, nil, "stacks", "--nonblocking", strconv.Itoa(tg.PID))
			want(t, r, 0)
		}
		healthy(t, tg)
	})
}
