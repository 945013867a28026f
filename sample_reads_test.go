package pyglass

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

// readCounter wraps a target's memory reader and counts its reads (each
// ReadAt and each ReadV is one system call on a live target), and among
// them those that touch one of the watched addresses.
type readCounter struct {
	r       memory.Reader
	watch   []uint64
	mu      sync.Mutex
	reads   int
	bytes   int // copied by vectored reads
	watched int
	shared  int // reads of watched words that read other memory too
}

func (c *readCounter) count(touches func(a uint64) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	for _, a := range c.watch {
		if touches(a) {
			c.watched++
			return
		}
	}
}

func (c *readCounter) ReadAt(p []byte, addr uint64) (int, error) {
	c.count(func(a uint64) bool { return a >= addr && a-addr < uint64(len(p)) })
	return c.r.ReadAt(p, addr)
}

func (c *readCounter) ReadV(segs []memory.Segment) {
	c.count(func(a uint64) bool {
		for _, s := range segs {
			if a >= s.Addr && a-s.Addr < uint64(len(s.Buf)) {
				return true
			}
		}
		return false
	})
	// A read of watched words that reads other memory too.
	other := 0
	for _, s := range segs {
		if !slices.ContainsFunc(c.watch, func(a uint64) bool { return a >= s.Addr && a-s.Addr < uint64(len(s.Buf)) }) {
			other++
		}
	}
	c.mu.Lock()
	if other > 0 && other < len(segs) {
		c.shared++
	}
	for _, s := range segs {
		c.bytes += len(s.Buf)
	}
	c.mu.Unlock()
	memory.ReadV(c.r, segs)
}

// TestSampleReads: on profile_target.py (one hot thread, nine idle) a
// sample reads the GIL's state in no system call of its own: its holder
// and locked words are read with the running threads' first pointers to
// their current frames, the address of the GIL (3.12+: interp->ceval.gil)
// kept from the last refresh of the thread list. It took a read per word,
// and one more for the GIL's address from 3.12, the costliest part of a
// sample after the stacks themselves at 1 kHz (issue 11). Counted through
// the reader, not timed: the machine may be loaded.
func TestSampleReads(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "profile_target.py"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
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
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		c := &readCounter{watch: []uint64{g.Holder}}
		if g.Locked != 0 {
			c.watch = append(c.watch, g.Locked)
		}
		if off := m.Layout().InterpCevalGil; off >= 0 {
			c.watch = append(c.watch, interps[0]+uint64(off))
		}
		p.memHook = func(r memory.Reader) memory.Reader { c.r = r; return c }
		st, err := p.Sample(context.Background(), SampleOptions{Rate: 1000, Duration: time.Second}, func(*Sample) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if st.Samples < 10 {
			t.Fatalf("%d samples in a second at 1 kHz", st.Samples)
		}
		n := float64(st.Samples)
		t.Logf("%s: %d samples: %.2f reads per sample, %.2f of them read the GIL, %.2f with other memory", in.Label, st.Samples, float64(c.reads)/n, float64(c.watched)/n, float64(c.shared)/n)
		// One per sample, and a few in each refresh of the thread list
		// (every 100 ms: at most a read in 20 samples).
		if max := 1.05 * n; float64(c.watched) > max {
			t.Errorf("%d reads of the GIL in %d samples, want at most one a sample", c.watched, st.Samples)
		}
		// The hot thread is running at almost every sample.
		if float64(c.shared) < 0.8*n {
			t.Errorf("%d of %d samples read the GIL with the running threads' frame pointers, want almost all", c.shared, st.Samples)
		}
	})
}

// TestSampleRefreshes: the sampler reads the thread list again when it
// changes, and at least every second, not every 100 ms: in 1.5 s of a
// target whose threads do not change, at most three reads of the list
// (the first, the one a second in, one spare); it read it 15 times (~11 %
// of its CPU at 1 kHz, issue 11). A thread started while sampling is
// found by a check of the list (a refresh without the names before it is
// sampled), not by the once-a-second refresh; it sleeps first, and is
// sampled when it wakes (its state is read every 100 ms only, but it
// holds the GIL).
func TestSampleRefreshes(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "profile_target.py"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		var refreshes, checked atomic.Int64
		inspect.TestHookRefreshThreads = func(withNames bool) {
			refreshes.Add(1)
			if !withNames {
				checked.Add(1)
			}
		}
		defer func() { inspect.TestHookRefreshThreads = nil }()
		st, err := p.Sample(context.Background(), SampleOptions{Rate: 1000, Duration: 1500 * time.Millisecond}, func(*Sample) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d refreshes of the thread list in %d samples", in.Label, refreshes.Load(), st.Samples)
		if n := refreshes.Load(); n < 2 || n > 3 {
			t.Errorf("%d refreshes of the thread list in 1.5 s of unchanging threads, want 2 or 3", n)
		}

		late := testenv.Start(t, in, testenv.Fixture(t, "late_thread.py"))
		lp, err := Attach(late.PID)
		if err != nil {
			t.Fatal(err)
		}
		var sent, seen time.Time
		var checkedAtSend, checkedAtSeen int64
		samples := 0
		_, err = lp.Sample(context.Background(), SampleOptions{Rate: 1000, Duration: 3 * time.Second}, func(s *Sample) error {
			samples++
			if samples == 100 {
				sent = time.Now()
				checkedAtSend = checked.Load()
				late.Send("go")
			}
			for _, th := range s.Threads {
				for _, f := range th.Frames {
					if f.Function == "late_spin" && seen.IsZero() {
						seen = s.Time
						checkedAtSeen = checked.Load()
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if sent.IsZero() || seen.IsZero() {
			t.Fatalf("the thread started after 100 samples was never sampled running (%d samples)", samples)
		}
		t.Logf("%s: the new thread sampled running %v after it was started (0.3 s asleep first); %d refreshes without names in between", in.Label, seen.Sub(sent), checkedAtSeen-checkedAtSend)
		if checkedAtSeen == checkedAtSend {
			t.Errorf("the new thread was found by the once-a-second refresh, not by a check of the thread list")
		}
	})
}

// TestSampleTaskStates: the scheduler states of idle threads are read
// every 100 ms, the running ones' every 10 ms with Idle and at every
// sample without, but for the GIL's holder's, whose stack is kept
// whatever its state says. On profile_target.py (one running thread, the
// GIL's holder, nine idle), 1 s at 1 kHz reads about 100 + 10 × 10
// states with Idle (it read all ten every 10 ms, 1,000: ~7 % of
// record's CPU, issue 11) and about 100 without (it read the running
// thread's at every sample, 1,000 more: ~17 % of record's CPU at 1 kHz
// on 2.7, by perf).
// The idle threads are still marked idle (TestSampleIdleAndGIL samples
// them all); a thread gone to sleep is still left out
// (TestSampleBlockingThread).
func TestSampleTaskStates(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "profile_target.py"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		var reads atomic.Int64
		inspect.TestHookTaskState = func() { reads.Add(1) }
		defer func() { inspect.TestHookTaskState = nil }()
		idle := 0
		st, err := p.Sample(context.Background(), SampleOptions{Rate: 1000, Duration: time.Second, Idle: true}, func(s *Sample) error {
			for _, th := range s.Threads {
				if th.Idle {
					idle++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: with Idle, %d thread states read in %d samples (%d idle thread samples)", in.Label, reads.Load(), st.Samples, idle)
		if n := reads.Load(); n > 400 {
			t.Errorf("with Idle, %d thread states read in 1 s, want at most 400 (the running thread every 10 ms, all ten every 100 ms)", n)
		}
		if idle < 5*int(st.Samples) {
			t.Errorf("%d idle thread samples in %d samples of 9 idle threads", idle, st.Samples)
		}

		reads.Store(0)
		hot := 0
		st, err = p.Sample(context.Background(), SampleOptions{Rate: 1000, Duration: time.Second}, func(s *Sample) error {
			hot += len(s.Threads)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: without Idle, %d thread states read in %d samples (%d thread samples)", in.Label, reads.Load(), st.Samples, hot)
		if n := reads.Load(); n > 400 {
			t.Errorf("without Idle, %d thread states read in 1 s, want at most 400 (all ten every 100 ms; the running thread holds the GIL)", n)
		}
		if hot < int(st.Samples)*9/10 || st.Samples < 500 {
			t.Errorf("without Idle, %d thread samples in %d samples: the hot thread was not sampled", hot, st.Samples)
		}
	})
}

// TestSampleBlockingThread samples stacks_flip.py's flipper, a thread
// that runs Python code for 2 ms (spin) and sleeps 2 ms (nap), over and
// over, and measures the time it spends in each, while every other CPU
// is kept busy by another process (a loaded machine: the sampler then
// shares a CPU with a thread of the target or with that process).
//   - With Idle, the share of its samples in spin must be the share of
//     its time, within 10 points (within 2 here). It was 15-17 % where
//     the thread spent 49 %: the sampler, asleep between samples, woke on
//     the CPU the thread kept busy and waited there, with a normal time
//     slice, until the thread slept; its samples fell where the thread
//     blocks (issue 11). On an idle machine it woke on the idle CPU and
//     was right. The sampler's thread now asks for a short slice (Linux
//     6.12 and later; skipped before).
//   - Without Idle, a thread that has just gone to sleep is left out
//     although it was running at the last look: its samples in nap are
//     at most a tenth of those in spin (there is an instant between
//     nap's call and the sleep), plus one per millisecond the thread
//     waited for a CPU (/proc's run_delay: woken at the end of nap, it
//     is runnable, and rightly sampled, while its stack still shows
//     nap; CI's parallel tests made that 109 samples once). A sampler
//     that looked at the running threads' states only every 100 ms kept
//     half of them.
func TestSampleBlockingThread(t *testing.T) {
	if !procfs.CustomSlices() {
		t.Skip("this kernel gives no custom time slices (Linux 6.12 and later do): the sampler's wake-ups can be late where the target keeps the CPU busy, and fall where its threads block")
	}
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_flip.py"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		stopLoad, err := testenv.StartLoad(max(runtime.NumCPU()-1, 1))
		if err != nil {
			t.Fatal(err)
		}
		defer stopLoad()
		split := func() (spin, nap float64) {
			tg.Send("split")
			line := tg.WaitLine("SPLIT", 10*time.Second)
			if _, err := fmt.Sscanf(line, "SPLIT %f %f", &spin, &nap); err != nil {
				t.Fatalf("parsing %q: %v", line, err)
			}
			return spin, nap
		}
		flipper := 0 // its thread id, once sampled
		sample := func(idle bool) (spin, nap, other int, truth float64) {
			s0, n0 := split()
			_, err := p.Sample(context.Background(), SampleOptions{Rate: 1000, Duration: 2 * time.Second, Idle: idle}, func(s *Sample) error {
				for _, th := range s.Threads {
					if th.Name != "flipper" || len(th.Frames) == 0 {
						continue
					}
					flipper = th.TID
					switch th.Frames[len(th.Frames)-1].Function {
					case "spin":
						spin++
					case "nap":
						nap++
					default:
						other++
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s1, n1 := split()
			return spin, nap, other, (s1 - s0) / (s1 - s0 + n1 - n0)
		}

		spin, nap, other, truth := sample(true)
		share := float64(spin) / float64(max(spin+nap+other, 1))
		t.Logf("%s: with Idle, flipper sampled %d times in spin, %d in nap, %d elsewhere: %.1f %% in spin, where it spent %.1f %% of its time", in.Label, spin, nap, other, 100*share, 100*truth)
		if spin+nap+other < 1000 {
			t.Fatalf("with Idle, flipper sampled %d times in 2 s at 1 kHz", spin+nap+other)
		}
		if math.Abs(share-truth) > 0.10 {
			t.Errorf("with Idle, %.1f %% of flipper's samples are in spin, where it spent %.1f %% of its time", 100*share, 100*truth)
		}

		waited := testenv.RunDelay(tg.PID, flipper)
		spin, nap, other, truth = sample(false)
		if w := testenv.RunDelay(tg.PID, flipper); waited >= 0 && w >= waited {
			waited = w - waited
		} else {
			waited = 0
		}
		t.Logf("%s: without Idle, flipper sampled %d times in spin, %d in nap, %d elsewhere (%.1f %% of its time in spin); it waited %v for a CPU", in.Label, spin, nap, other, 100*truth, waited)
		if float64(spin) < 0.6*truth*2000 {
			t.Errorf("without Idle, flipper sampled %d times in spin in 2 s at 1 kHz, where it spent %.1f %% of its time", spin, 100*truth)
		}
		if nap > spin/10+int(waited/time.Millisecond) {
			t.Errorf("without Idle, flipper sampled %d times asleep in nap against %d in spin, having waited %v for a CPU: a thread gone to sleep was sampled as running", nap, spin, waited)
		}
	})
}

// TestSampleOneRead: on profile_target.py with Idle (ten threads, one
// hot and 25 frames deep), a sample is in steady state one system call
// of memory reads: the GIL's words, every thread's current frame
// pointer, the pages each thread's last walk touched and the pointers
// again, in one vectored read. It took a read per pointer hop, one for
// the pages and a read per hop again (4–6 a sample), the cost of a
// sample after the pages themselves (issue 11). It copies the byte
// ranges the walks touched (the frame objects before 3.11, the data
// stacks' spans from 3.11), not whole pages: 24 KiB a sample on 2.7, 15
// on 3.12, 35 on 3.15, where ten threads' pages were 87, 80 and 100. Counted
// through the reader, not timed: the machine may be loaded.
func TestSampleOneRead(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "profile_target.py"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		c := &readCounter{}
		p.memHook = func(r memory.Reader) memory.Reader { c.r = r; return c }
		last, single, hot := 0, 0, 0
		st, err := p.Sample(context.Background(), SampleOptions{Rate: 1000, Duration: time.Second, Idle: true}, func(s *Sample) error {
			c.mu.Lock()
			n := c.reads - last
			last = c.reads
			c.mu.Unlock()
			if n == 1 {
				single++
			}
			for _, th := range s.Threads {
				if len(th.Frames) >= 25 {
					hot++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if st.Samples < 10 || hot < int(st.Samples)*9/10 {
			t.Fatalf("%d samples in a second at 1 kHz, %d with the hot thread's stack", st.Samples, hot)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		n := float64(st.Samples)
		t.Logf("%s: %d samples: %.2f reads per sample, %d samples in one read, %.0f bytes per sample, lost %v", in.Label, st.Samples, float64(c.reads)/n, single, float64(c.bytes)/n, st.Lost)
		if b := float64(c.bytes) / n; b > 60<<10 {
			t.Errorf("%.0f bytes read per sample, want at most 60 KiB (the ranges the stacks need)", b)
		}
		// The samples that refresh the thread list (every second, with
		// the names) or decode code objects again read more.
		if float64(single) < 0.8*n {
			t.Errorf("%d of %d samples in one read, want at least 80 %%", single, st.Samples)
		}
	})
}
