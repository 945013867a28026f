package pyglass

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestStacksEnteringEvalLoop: on 3.11 and 3.12 the evaluation loop links
// its _PyCFrame into the thread state a few instructions before it writes
// the frame into it; a thread paused in between has as its frame whatever
// that C stack slot held: 0 (no frames at all, which once failed
// TestStacksThreadChurn in CI), 0x6, a stale pointer. The test makes a
// blocked thread's state look so, with 0 as its frame:
//   - paused, the stack is read again in a later short pause: when the
//     frame is back by then (the test restores it as soon as the first
//     pause ends), the thread has its frames;
//   - when it stays so, the thread is listed with an error saying why it
//     has no frames (paused and without pausing), never as a thread with
//     no Python frames and no error; the sampler counts its samples as
//     lost (torn), paused or not, never as samples of a thread running no
//     Python code.
func TestStacksEnteringEvalLoop(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		l, err := layout.For(in.Major, in.Minor)
		if err != nil {
			t.Fatal(err)
		}
		if l.CFrameCurrentFrame < 0 || l.TstateRootCframe < 0 {
			testenv.Skipf(t, "%s: only 3.11 and 3.12 keep the frame in a _PyCFrame the evaluation loop links first", in.Label)
		}
		tg := testenv.Start(t, in, testenv.Fixture(t, "stacks_broken.py"))
		var tstate uint64
		for _, line := range tg.Stdout() {
			if strings.HasPrefix(line, "VICTIM tstate=") {
				tstate, err = strconv.ParseUint(strings.TrimPrefix(strings.Fields(line)[1], "tstate=0x"), 16, 64)
				if err != nil {
					t.Fatalf("%q: %v", line, err)
				}
			}
		}
		if tstate == 0 {
			t.Fatalf("no VICTIM line: %q", tg.Stdout())
		}
		command := func(cmd, answer string) uint64 {
			t.Helper()
			tg.Send(cmd)
			v, err := strconv.ParseUint(strings.TrimPrefix(tg.WaitLine(answer, 10*time.Second), answer+"0x"), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			// The line comes while the main thread is still printing it:
			// wait for it to be back waiting for a command.
			testenv.WaitUntil(t, 10*time.Second, "the main thread waiting for a command", func() bool {
				return testenv.Asleep(tg.PID, tg.PID)
			})
			return v
		}
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		victim := func(d *StackDump) *ThreadStack {
			for i := range d.Threads {
				if d.Threads[i].Name == "victim" {
					return &d.Threads[i]
				}
			}
			t.Fatalf("no victim thread in %+v", d.Threads)
			return nil
		}
		blocked := func(th *ThreadStack) bool {
			return th.Error == "" && len(th.Frames) > 0 && th.Frames[len(th.Frames)-1].Function == "victim_blocked"
		}
		// The victim between recording its state and blocking: wait for
		// it to be in victim_blocked.
		testenv.WaitUntil(t, 10*time.Second, "the victim blocked in victim_blocked", func() bool {
			d, err := p.Stacks(context.Background(), StackOptions{})
			return err == nil && blocked(victim(d))
		})
		cframe := command(fmt.Sprintf("peek %#x", tstate+uint64(l.TstateCframe)), "PEEK ")
		if cframe == tstate+uint64(l.TstateRootCframe) {
			t.Fatalf("the victim's cframe is its root_cframe: not in the evaluation loop")
		}
		field := cframe + uint64(l.CFrameCurrentFrame)
		frame := command(fmt.Sprintf("poke %#x 0x0", field), "POKED ")
		if frame == 0 {
			t.Fatalf("the victim's frame was 0")
		}
		restored := false
		defer func() {
			if !restored {
				command(fmt.Sprintf("poke %#x %#x", field, frame), "POKED ")
			}
		}()

		for _, nonblocking := range []bool{false, true} {
			d, err := p.Stacks(context.Background(), StackOptions{NonBlocking: nonblocking})
			if err != nil {
				t.Fatal(err)
			}
			if v := victim(d); len(v.Frames) != 0 || !strings.Contains(v.Error, "entering the evaluation loop") {
				t.Errorf("nonblocking %v, frame 0: victim %+v, want no frames and an error that says it was entering the evaluation loop", nonblocking, v)
			}
		}

		// The sampler counts each sample of the victim as lost (torn),
		// never as a thread with no Python code running.
		for _, blocking := range []bool{false, true} {
			lost, read := 0, 0
			stats, err := p.Sample(context.Background(), SampleOptions{Rate: 200, Duration: 300 * time.Millisecond, Idle: true, Blocking: blocking}, func(s *Sample) error {
				for _, th := range s.Threads {
					if th.Name != "victim" {
						continue
					}
					if th.Lost == "torn" {
						lost++
					} else {
						read++
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if lost == 0 || read != 0 || stats.Lost["torn"] < int64(lost) {
				t.Errorf("blocking %v, frame 0: %d samples of the victim lost (torn), %d read, lost %v in %d samples; want every sample of it lost as torn", blocking, lost, read, stats.Lost, stats.Samples)
			}
		}

		// The frame back after the first pause.
		pauses := 0
		inspect.TestHookPaused = func(time.Duration) {
			pauses++
			command(fmt.Sprintf("poke %#x %#x", field, frame), "POKED ")
			restored = true
		}
		d, err := p.Stacks(context.Background(), StackOptions{})
		inspect.TestHookPaused = nil
		if err != nil {
			t.Fatal(err)
		}
		if pauses != 1 || !restored {
			t.Fatalf("the frame was not restored after the first pause (%d pauses)", pauses)
		}
		if v := victim(d); !blocked(v) {
			t.Errorf("frame back after the first pause: victim %+v, want its frames, ending in victim_blocked", v)
		}
		// And the target goes on unharmed.
		tg.Send("release")
		tg.WaitLine("VICTIM DONE", 10*time.Second)
	})
}
