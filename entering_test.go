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

// enteringVictim is stacks_broken.py's target with its victim's frame
// in reach: poke sets it (field: where cpython.Threads reads it, 3.11
// and 3.12), frame is its value before the test changed it.
type enteringVictim struct {
	tg      *testenv.Target
	p       *Process
	field   uint64
	frame   uint64
	command func(cmd, answer string) uint64
}

// startEnteringVictim starts stacks_broken.py on in (3.11 and 3.12
// only: it skips the others) and waits for its victim to block in
// victim_blocked.
func startEnteringVictim(t *testing.T, in testenv.Interp) *enteringVictim {
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
	v := &enteringVictim{tg: tg}
	v.command = func(cmd, answer string) uint64 {
		t.Helper()
		tg.Send(cmd)
		n, err := strconv.ParseUint(strings.TrimPrefix(tg.WaitLine(answer, 10*time.Second), answer+"0x"), 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		// The line comes while the main thread is still printing it:
		// wait for it to be back waiting for a command.
		testenv.WaitUntil(t, 10*time.Second, "the main thread waiting for a command", func() bool {
			return testenv.Asleep(tg.PID, tg.PID)
		})
		return n
	}
	if v.p, err = Attach(tg.PID); err != nil {
		t.Fatal(err)
	}
	// The victim between recording its state and blocking: wait for
	// it to be in victim_blocked.
	testenv.WaitUntil(t, 10*time.Second, "the victim blocked in victim_blocked", func() bool {
		d, err := v.p.Stacks(context.Background(), StackOptions{})
		return err == nil && victimBlocked(victimOf(t, d))
	})
	cframe := v.command(fmt.Sprintf("peek %#x", tstate+uint64(l.TstateCframe)), "PEEK ")
	if cframe == tstate+uint64(l.TstateRootCframe) {
		t.Fatalf("the victim's cframe is its root_cframe: not in the evaluation loop")
	}
	v.field = cframe + uint64(l.CFrameCurrentFrame)
	v.frame = v.command(fmt.Sprintf("peek %#x", v.field), "PEEK ")
	if v.frame == 0 {
		t.Fatalf("the victim's frame was 0")
	}
	return v
}

// poke sets the victim's frame to frame.
func (v *enteringVictim) poke(frame uint64) {
	v.command(fmt.Sprintf("poke %#x %#x", v.field, frame), "POKED ")
}

// victimOf is the thread named victim of d.
func victimOf(t *testing.T, d *StackDump) *ThreadStack {
	t.Helper()
	for i := range d.Threads {
		if d.Threads[i].Name == "victim" {
			return &d.Threads[i]
		}
	}
	t.Fatalf("no victim thread in %+v", d.Threads)
	return nil
}

// victimBlocked reports whether th was read whole, blocked in
// victim_blocked.
func victimBlocked(th *ThreadStack) bool {
	return th.Error == "" && len(th.Frames) > 0 && th.Frames[len(th.Frames)-1].Function == "victim_blocked"
}

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
		v := startEnteringVictim(t, in)
		tg, p, command, field, frame := v.tg, v.p, v.command, v.field, v.frame
		victim := func(d *StackDump) *ThreadStack { return victimOf(t, d) }
		blocked := victimBlocked
		v.poke(0)
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
			// What it waits for is said without locks' note on the
			// locks it holds (its error says why it has no frames).
			if v := victim(d); v.WaitingFor != nil && strings.Contains(v.WaitingFor.Evidence, "locks it holds") {
				t.Errorf("nonblocking %v, frame 0: victim waits for %+v, want no note on the locks it holds", nonblocking, v.WaitingFor)
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

// TestLocksEnteringEvalLoop: Locks on a thread caught entering the
// evaluation loop (3.11, 3.12; made so as in TestStacksEnteringEvalLoop).
// The victim holds the lock `held` in a with block and a second thread
// waits for it; the holder of a plain Lock is inferred from the frames
// that refer to it, so it needs the victim's frames:
//   - the frame back after the first pause: Locks reads the victim's
//     frames in a second pause and names it as the holder;
//   - the frame staying 0: the holder is unknown and the victim's
//     evidence says its frames were not read, never a report that
//     passes over it in silence.
func TestLocksEnteringEvalLoop(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		v := startEnteringVictim(t, in)
		v.tg.Send("waiter")
		v.tg.WaitLine("WAITER STARTED", 10*time.Second)
		thread := func(rep *LockReport, name string) LockThread {
			t.Helper()
			for _, th := range rep.Threads {
				if th.Name == name {
					return th
				}
			}
			t.Fatalf("no thread %q in %+v", name, rep.Threads)
			return LockThread{}
		}
		locks := func() *LockReport {
			t.Helper()
			rep, err := v.p.Locks(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return rep
		}
		// Before: the waiter waits for the victim's lock.
		var victimTID int
		testenv.WaitUntil(t, 10*time.Second, "the waiter waiting for the lock the victim holds", func() bool {
			rep := locks()
			w, vt := thread(rep, "waiter"), thread(rep, "victim")
			victimTID = vt.TID
			return w.WaitsFor.Kind == WaitLock && w.WaitsFor.HolderTID == vt.TID && vt.TID != 0
		})

		v.poke(0)
		restored := false
		defer func() {
			if !restored {
				v.poke(v.frame)
			}
		}()
		rep := locks()
		if w := thread(rep, "waiter"); w.WaitsFor.Kind != WaitLock || w.WaitsFor.HolderTID != 0 ||
			!strings.Contains(w.WaitsFor.Evidence, fmt.Sprintf("the frames of thread %d were not read", victimTID)) {
			t.Errorf("frame 0: waiter %+v, want it waiting for a lock whose holder is unknown, saying the victim's frames were not read", w.WaitsFor)
		}
		if vt := thread(rep, "victim"); !strings.Contains(vt.WaitsFor.Evidence, "caught entering the evaluation loop") || strings.Contains(vt.WaitsFor.Evidence, "no Python frame") {
			t.Errorf("frame 0: victim's evidence %q, want it to say its frames were not read (not that it has none)", vt.WaitsFor.Evidence)
		}

		// The frame back after the first pause.
		t.Cleanup(func() { inspect.TestHookLocksThawed = nil })
		inspect.TestHookLocksThawed = func() {
			v.poke(v.frame)
			restored = true
		}
		rep = locks()
		inspect.TestHookLocksThawed = nil
		if !restored {
			t.Fatal("the frame was not restored after the first pause")
		}
		w := thread(rep, "waiter")
		if w.WaitsFor.Kind != WaitLock || w.WaitsFor.HolderTID != victimTID || !w.WaitsFor.HolderInferred {
			t.Errorf("frame back after the first pause: waiter %+v, want the victim (%d) as the lock's inferred holder", w.WaitsFor, victimTID)
		}
		if vt := thread(rep, "victim"); strings.Contains(vt.WaitsFor.Evidence, "entering") {
			t.Errorf("frame back after the first pause: victim's evidence %q still says its frames were not read", vt.WaitsFor.Evidence)
		}
		t.Logf("%s: waiter: %s", in.Label, w.WaitsFor.Line())

		// And the target goes on unharmed.
		v.tg.Send("release")
		v.tg.WaitLine("VICTIM DONE", 10*time.Second)
	})
}
