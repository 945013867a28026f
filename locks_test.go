package pyglass

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

func waiting(tid, holder int, inferred bool) LockThread {
	return LockThread{TID: tid, Name: "t", WaitsFor: WaitFor{Kind: WaitLock, Type: "Lock", HolderTID: holder, HolderInferred: inferred}}
}

// TestWaitCycles: cycles of the wait-for graph, each once, from its
// smallest thread id; chains into a cycle and chains alone are no cycle.
func TestWaitCycles(t *testing.T) {
	for _, c := range []struct {
		name    string
		threads []LockThread
		want    [][]int
		verdict string
	}{
		{"none", []LockThread{{TID: 1, WaitsFor: WaitFor{Kind: WaitCondition}}, {TID: 2, WaitsFor: WaitFor{Kind: WaitSyscall}}}, [][]int{}, VerdictIdle},
		{"holder unknown", []LockThread{waiting(1, 0, false), {TID: 2, WaitsFor: WaitFor{Kind: WaitSyscall}}}, [][]int{}, VerdictUnknown},
		{"chain", []LockThread{waiting(1, 2, false), waiting(2, 3, true), {TID: 3, WaitsFor: WaitFor{Kind: WaitSyscall}}}, [][]int{}, VerdictBlocked},
		{"two", []LockThread{waiting(5, 3, false), waiting(3, 5, true)}, [][]int{{3, 5}}, VerdictDeadlock},
		{"ring and tail", []LockThread{waiting(9, 7, false), waiting(7, 8, false), waiting(8, 6, false), waiting(6, 7, false)}, [][]int{{6, 7, 8}}, VerdictDeadlock},
		{"two rings", []LockThread{waiting(1, 2, false), waiting(2, 1, false), waiting(3, 4, false), waiting(4, 3, false)}, [][]int{{1, 2}, {3, 4}}, VerdictDeadlock},
		{"holder gone", []LockThread{waiting(1, 99, false)}, [][]int{}, VerdictBlocked},
		{"running", []LockThread{{TID: 1, WaitsFor: WaitFor{Kind: WaitNone}}}, [][]int{}, VerdictRunning},
	} {
		rep := &LockReport{Threads: c.threads}
		rep.Cycles = waitCycles(c.threads)
		if !reflect.DeepEqual(rep.Cycles, c.want) {
			t.Errorf("%s: cycles %v, want %v", c.name, rep.Cycles, c.want)
		}
		v := lockVerdict(rep)
		if v.Kind != c.verdict || (v.Kind == VerdictDeadlock) != strings.HasPrefix(v.Summary, "deadlock:") {
			t.Errorf("%s: verdict %+v, want %s", c.name, v, c.verdict)
		}
	}
}

// TestLocksPanicThaws: a panic while the target's threads are paused for
// Locks comes back as an ErrInternal error and leaves the target running,
// no thread stopped or traced; the next Locks works.
func TestLocksPanicThaws(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, p := startSleeper(t, in)
		calls := 0
		testHookLocks = func() {
			calls++
			panic("injected by the test")
		}
		_, err := p.Locks(context.Background())
		testHookLocks = nil
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
