package inspect

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/cpython"
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
		if c.name == "running" && v.Summary != "no deadlock: 1 thread running, none waits for another thread" {
			t.Errorf("running: summary %q (one thread: singular)", v.Summary)
		}
	}
}

// TestGILHolderSaidOnce: the GIL holder's evidence says it holds the
// GIL once, whether its wait already said so (a thread running Python)
// or not (one blocked in C with the GIL); the thread waiting for the GIL
// is given the holder.
func TestGILHolderSaidOnce(t *testing.T) {
	running := &lockThread{gil: true, out: LockThread{TID: 1, WaitsFor: WaitFor{Kind: WaitNone, Evidence: "running, holds the GIL"}}}
	inC := &lockThread{gil: true, out: LockThread{TID: 2, WaitsFor: WaitFor{Kind: WaitSyscall, Evidence: "in clock_nanosleep"}}}
	waiter := &lockThread{out: LockThread{TID: 3, WaitsFor: WaitFor{Kind: WaitGIL}}}
	for _, h := range []*lockThread{running, inC} {
		w := &lockWalk{threads: []*lockThread{h, waiter}}
		w.gilHolder()
		if n := strings.Count(h.out.WaitsFor.Evidence, "holds the GIL"); n != 1 {
			t.Errorf("holder's evidence %q says it holds the GIL %d times, want once", h.out.WaitsFor.Evidence, n)
		}
		if waiter.out.WaitsFor.HolderTID != h.out.TID {
			t.Errorf("the waiter's holder is %d, want %d", waiter.out.WaitsFor.HolderTID, h.out.TID)
		}
	}
}

// TestEnteringLoop: a thread inside the evaluation loop with no frame,
// or whose frames fail to read, was caught entering it; one whose stack
// is only deeper than the read goes is not (locks keeps its frames).
func TestEnteringLoop(t *testing.T) {
	one := []cpython.Frame{{Function: "f"}}
	deep := fmt.Errorf("reading frames: %w", cpython.ErrTooDeep)
	for _, c := range []struct {
		inEval bool
		frames []cpython.Frame
		err    error
		want   bool
	}{
		{true, nil, nil, true},
		{true, one, errors.New("a null code object"), true},
		{true, one, deep, false},
		{true, one, nil, false},
		{false, nil, nil, false},
		{false, one, errors.New("a cycle"), false},
	} {
		if got := enteringLoop(c.inEval, c.frames, c.err); got != c.want {
			t.Errorf("enteringLoop(%v, %d frames, %v) = %v, want %v", c.inEval, len(c.frames), c.err, got, c.want)
		}
	}
}
