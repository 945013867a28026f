package pyglass

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestLocksPanicThaws: a panic while the target's threads are paused for
// Locks comes back as an ErrInternal error and leaves the target running,
// no thread stopped or traced; the next Locks works.
func TestLocksPanicThaws(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, p := startSleeper(t, in)
		calls := 0
		inspect.TestHookLocks = func() {
			calls++
			panic("injected by the test")
		}
		_, err := p.Locks(context.Background())
		inspect.TestHookLocks = nil
		if calls == 0 {
			t.Fatalf("the hook was not reached (Locks: %v)", err)
		}
		if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "injected by the test") {
			t.Fatalf("Locks after a panic: %v, want ErrInternal", err)
		}
		if err := tg.Healthy(); err != nil {
			t.Fatal(err)
		}
		rep, err := p.Locks(context.Background())
		if err != nil || len(rep.Threads) < 3 || rep.Verdict.Kind == VerdictDeadlock {
			t.Fatalf("Locks after the panic: %+v, %v", rep, err)
		}
		if err := tg.Healthy(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLocksPause: Locks holds the target's threads no longer than Stacks
// does (both read the thread states and frames paused; Locks decodes what
// the frames refer to after the thaw), on ten blocked threads 20 calls
// deep: the shortest of several pauses of each, at most 1.5 times
// Stacks'.
func TestLocksPause(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "locks/deadlock.py"), testenv.Args("ten"))
		p, err := Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		var pauses []time.Duration
		testHookThaw = func(d time.Duration) { pauses = append(pauses, d) }
		defer func() { testHookThaw = nil }()
		// measure returns the shortest pause of Locks and of Stacks, over
		// 11 calls of each, alternated.
		measure := func() (l, s time.Duration, locks, stacks []time.Duration) {
			for i := 0; i < 11; i++ {
				pauses = nil
				if _, err := p.Stacks(context.Background(), StackOptions{}); err != nil || len(pauses) == 0 {
					t.Fatalf("Stacks: %v (%d pauses)", err, len(pauses))
				}
				stacks = append(stacks, pauses[0]) // the walk's; names may need a second
				pauses = nil
				rep, err := p.Locks(context.Background())
				if err != nil || len(pauses) != 1 {
					t.Fatalf("Locks: %v (%d pauses)", err, len(pauses))
				}
				if len(rep.Cycles) != 2 || len(rep.Threads) < 11 {
					t.Fatalf("Locks saw %d threads, cycles %v; want 11 threads and 2 cycles", len(rep.Threads), rep.Cycles)
				}
				locks = append(locks, pauses[0])
			}
			return slices.Min(locks), slices.Min(stacks), locks, stacks
		}
		// A loaded machine can stretch any pause: a second measure before
		// failing.
		for try := 0; ; try++ {
			l, s, locks, stacks := measure()
			t.Logf("shortest pause of 11 threads: locks %v, stacks %v", l, s)
			if l <= s*3/2 {
				break
			}
			if try == 1 {
				t.Errorf("Locks held the threads %v (shortest of %v), Stacks %v (of %v): want at most 1.5 times", l, locks, s, stacks)
				break
			}
		}
		if err := tg.Healthy(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLockRefsRead: the lock analysis reads the references of the frames
// it looks at, not of every frame of every thread. On the sleeper (no
// thread waits on a lock), from 3.11 on (before, the method names are
// qualified through every frame's self), at most the innermost frame of
// each thread is read: reading them all up front fails this.
func TestLockRefsRead(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 11) {
			testenv.Skipf(t, "before 3.11 every frame's self names its method's class")
		}
		_, p := startSleeper(t, in)
		var frames, read, threads int
		inspect.TestHookLockThreads = func(n, f, r int) { threads, frames, read = threads+n, frames+f, read+r }
		defer func() { inspect.TestHookLockThreads = nil }()
		if _, err := p.Locks(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d threads, %d frames, references read for %d", in.Label, threads, frames, read)
		if frames <= threads {
			t.Fatalf("%d frames in %d threads: the sleeper's threads should be deeper", frames, threads)
		}
		if read > threads {
			t.Errorf("references read for %d of %d frames, want at most one a thread (%d)", read, frames, threads)
		}
	})
}
