package pyglass

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

// gilOf finds the GIL words of the target's first interpreter.
func gilOf(t *testing.T, p *Process) (cpython.GILWords, memory.Reader, func()) {
	t.Helper()
	m, err := p.openMemory()
	if err != nil {
		t.Fatal(err)
	}
	interps, err := cpython.FindInterpreters(m.Reader(), m.Image(), m.Layout())
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	g, err := cpython.FindGIL(m.Reader(), m.Image(), m.Layout(), interps[0])
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return g, m.Reader(), m.Close
}

func readGIL(t *testing.T, g cpython.GILWords, r memory.Reader) cpython.GILState {
	t.Helper()
	var buf cpython.GILBuf
	segs := g.Segments(nil, &buf)
	memory.ReadV(r, segs)
	st, err := g.Read(segs)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestGILSwitchCount: the GIL's switch count is where pyglass reads it,
// on every interpreter that has one (3.6+): it stays the same while one
// thread alone runs Python code (profile_target.py's hot thread; the
// others are blocked), and grows when another thread takes the GIL (the
// reporting thread, woken by a line). A wrong offset would read a word
// that never moves, and the sampler would carry stale stacks over.
func TestGILSwitchCount(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "profile_target.py"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		g, r, done := gilOf(t, p)
		defer done()
		if g.Switch == 0 {
			if in.Major == 2 {
				testenv.Skipf(t, "2.7's GIL keeps no switch count (its lock is a plain semaphore)")
			}
			t.Fatalf("no switch count found for %s's GIL (%+v)", in.Label, g)
		}
		a := readGIL(t, g, r)
		time.Sleep(200 * time.Millisecond)
		b := readGIL(t, g, r)
		if !a.HasSwitch || !b.HasSwitch || a.LastHolder == 0 {
			t.Fatalf("GIL states %+v, %+v: want a switch count and a last holder", a, b)
		}
		if a.Switch != b.Switch || a.LastHolder != b.LastHolder {
			t.Errorf("one thread alone running: the switch count went %d -> %d, the last holder %#x -> %#x; want no change", a.Switch, b.Switch, a.LastHolder, b.LastHolder)
		}
		tg.Send("")
		tg.WaitLine("SPLIT", 5*time.Second)
		var c cpython.GILState
		testenv.WaitUntil(t, 2*time.Second, "the hot thread has the GIL back", func() bool {
			c = readGIL(t, g, r)
			return c.LastHolder == b.LastHolder
		})
		if c.Switch < b.Switch+2 {
			t.Errorf("another thread took the GIL and gave it back: the switch count went %d -> %d, want at least 2 more", b.Switch, c.Switch)
		}
	})
}

// TestSampleCarryOver: a thread that has not run since the last sample
// keeps its stack without being read (3.6+), and is read again as soon
// as it runs: carry_over.py's second thread, blocked in phase_one, is
// carried over; moved to phase_two, it is sampled there within 50 ms of
// the move, and never in phase_one after. Counted through the reader, it
// reads far fewer segments per sample than every thread read each time.
func TestSampleCarryOver(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "carry_over.py"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		type seen struct {
			at       time.Time
			one, two bool
		}
		var log []seen
		n := 0
		st, err := p.Sample(context.Background(), SampleOptions{Rate: 1000, Idle: true, Duration: 1200 * time.Millisecond}, func(s *Sample) error {
			if n++; n == 400 {
				tg.Send("")
			}
			var v seen
			v.at = s.Time
			for _, th := range s.Threads {
				for _, f := range th.Frames {
					v.two = v.two || f.Function == "phase_two"
				}
				for _, f := range th.Frames {
					// (phase_one calls phase_two: in phase_one is
					// without phase_two above it)
					v.one = v.one || f.Function == "phase_one" && !v.two
				}
			}
			log = append(log, v)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		line := tg.WaitLine("PHASE2", 5*time.Second)
		sec, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "PHASE2")), 64)
		if err != nil {
			t.Fatalf("PHASE2 line %q: %v", line, err)
		}
		moved := time.Unix(0, int64(sec*1e9))
		var firstTwo time.Time
		for _, v := range log {
			if v.two && firstTwo.IsZero() {
				firstTwo = v.at
			}
			if v.one && !firstTwo.IsZero() {
				t.Fatalf("a sample at %v shows phase_one after one at %v showed phase_two", v.at, firstTwo)
			}
			if v.one && v.at.After(moved.Add(50*time.Millisecond)) {
				t.Fatalf("a sample at %v, %v after the move, still shows phase_one", v.at, v.at.Sub(moved))
			}
		}
		if firstTwo.IsZero() {
			t.Fatalf("phase_two never sampled (moved at %v, %d samples)", moved, len(log))
		}
		perThread := float64(st.CarriedOver) / float64(st.Samples)
		t.Logf("%s: %d samples, %.2f stacks carried over per sample; phase_two first sampled %v after the move", in.Label, st.Samples, perThread, firstTwo.Sub(moved))
		if in.Major == 2 {
			if st.CarriedOver != 0 {
				t.Errorf("2.7 has no GIL switch count, yet %d stacks were carried over", st.CarriedOver)
			}
			return
		}
		// Two threads are blocked (main, and the second thread but for
		// its move): most samples carry both over.
		if perThread < 1.5 {
			t.Errorf("%.2f stacks carried over per sample, want about 2 (the blocked threads)", perThread)
		}
	})
}

// TestSampleUnchanged: a stack whose memory is the same as at its last
// walk is not walked again, and one whose caller moved is: two_calls.py's
// worker blocks in block() from two lines of worker() in turn, 30 ms
// each, its stack the same but for the caller's line (on 2.7 even
// block()'s frame is at the same address each time). Both lines are
// sampled, each in 35 to 65 % of the worker's samples: a sampler that
// took the stack as unchanged from its top frame alone keeps one line
// (1,000 samples against 1 on 3.13, 966 against 1 on 2.7, when tried).
// Most of the worker's stacks are not walked: taken as unchanged (2.7),
// or carried over (3.6+, when the switch count did not move).
func TestSampleUnchanged(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		src := testenv.Fixture(t, "two_calls.py")
		tg := testenv.Start(t, in, src)
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		firstLine, secondLine := testenv.MarkedLine(t, src, "FIRST"), testenv.MarkedLine(t, src, "SECOND")
		first, second := 0, 0
		var st *SampleStats
		for try := 0; try < 3; try++ {
			first, second = 0, 0
			st, err = p.Sample(context.Background(), SampleOptions{Rate: 1000, Idle: true, Duration: time.Second}, func(s *Sample) error {
				for _, th := range s.Threads {
					if n := len(th.Frames); th.Name == "worker" && n >= 2 && th.Frames[n-1].Function == "block" {
						switch caller := th.Frames[n-2]; caller.Line {
						case firstLine:
							first++
						case secondLine:
							second++
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// The machine may have held the target back: a few tries.
			if n := first + second; n >= 200 && 100*first >= 35*n && 100*second >= 35*n {
				break
			}
		}
		n := first + second
		t.Logf("%s: %d samples, worker in block() from FIRST %d, SECOND %d; %d stacks unchanged, %d carried over", in.Label, st.Samples, first, second, st.Unchanged, st.CarriedOver)
		if n < 200 || 100*first < 35*n || 100*second < 35*n {
			t.Errorf("the worker blocked half the time on each line: sampled %d times from FIRST, %d from SECOND", first, second)
		}
		// Two threads, the worker and main (asleep but every 30 ms):
		// at least one and a half stacks a sample not walked means the
		// worker's were not, most of the time; on 2.7 (no carry-over)
		// they were taken as unchanged.
		spared := st.Unchanged
		if in.Major > 2 {
			spared += st.CarriedOver
		}
		if 2*spared < 3*st.Samples {
			t.Errorf("%d stacks taken as unchanged and %d carried over in %d samples, want one and a half a sample", st.Unchanged, st.CarriedOver, st.Samples)
		}
	})
}
