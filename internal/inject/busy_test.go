package inject

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/target/live"
)

// TestStartThreadBusyInC: the only thread of the target runs C code with
// the GIL released (ctypes calls of memmove over 64 MB) nearly all the
// time. It is never borrowed there; the gate makes it stop at the entry of
// PyEval_RestoreThread, where it is borrowed, well within the timeout.
// Afterwards every GOT slot holds PyEval_RestoreThread again, no cave
// holds pyglass code, and the target's copies stay right.
func TestStartThreadBusyInC(t *testing.T) {
	forEachBusy(t, func(t *testing.T, v string, tg *target, syms Symbols, mem *live.Process, slots []gotSlot) {
		gated := 0
		for i := 0; i < 3; i++ {
			var log []string
			res := injectMarker(t, tg, Options{
				AvoidEINTR: strings.HasPrefix(v, "2."),
				Timeout:    20 * time.Second,
				Log:        func(s string) { log = append(log, s) },
			})
			if strings.Contains(res.Why, "PyEval_RestoreThread") {
				gated++
			}
			t.Logf("wall %v, %s; log tail: %q", res.Wall, res.Why, tail(log, 3))
			checkSlots(t, mem, tg.pid, syms.PyEvalRestoreThread, len(slots))
			if at := magicInCaves(t, mem, tg.pid); at != 0 {
				t.Fatalf("after exec %d: pyglass code left in a cave at %#x", i, at)
			}
		}
		t.Logf("%d of 3 borrowed at the gate", gated)
		time.Sleep(100 * time.Millisecond)
		tg.checkHealthy()
	})
}

// forEachBusy runs fn, on every interpreter, against a target busy in C
// code ("cbusy"), with its symbols, its memory and the GOT slots of
// PyEval_RestoreThread.
func forEachBusy(t *testing.T, fn func(t *testing.T, v string, tg *target, syms Symbols, mem *live.Process, slots []gotSlot)) {
	testenv.ForEach(t, func(t *testing.T, py testenv.Interp) {
		v := py.Label
		tg := startTarget(t, py, "cbusy")
		syms := resolve(t, tg.pid)
		mem, err := live.Open(tg.pid)
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		slots := jumpSlots(mem, tg.pid, "PyEval_RestoreThread", syms.PyEvalRestoreThread, 4096)
		if len(slots) == 0 {
			t.Fatalf("no GOT slot of PyEval_RestoreThread holds %#x", syms.PyEvalRestoreThread)
		}
		fn(t, v, tg, syms, mem, slots)
	})
}

// checkSlots fails unless want GOT slots of PyEval_RestoreThread hold its
// address.
func checkSlots(t *testing.T, mem *live.Process, pid int, real uint64, want int) {
	t.Helper()
	got := jumpSlots(mem, pid, "PyEval_RestoreThread", real, 4096)
	n := 0
	for _, s := range got {
		if s.holds == real {
			n++
		}
	}
	if n != want || len(got) != want {
		t.Fatalf("%d GOT slots hold PyEval_RestoreThread (%d found), want %d", n, len(got), want)
	}
}

// TestGateLeftOpen: a pyglass killed while the gate is open (the test hook
// returns with it open) leaves the target running right: past the
// deadline the gate only forwards. The next StartThread that opens a gate
// takes the slots over, borrows the busy thread, and puts every slot back
// to PyEval_RestoreThread.
func TestGateLeftOpen(t *testing.T) {
	forEachBusy(t, func(t *testing.T, v string, tg *target, syms Symbols, mem *live.Process, slots []gotSlot) {
		testHookAbandon = func(pid int, step string) bool { return pid == tg.pid && step == "gate" }
		defer func() { testHookAbandon = nil }()
		// A thread found in interpreter code in the first rounds is
		// borrowed before any gate: try again.
		for i := 0; ; i++ {
			_, err := StartThread(tg.pid, syms, []byte("pass"), Options{Timeout: 500 * time.Millisecond, AvoidEINTR: strings.HasPrefix(v, "2.")})
			if err != nil && strings.Contains(err.Error(), "abandoned") {
				break
			}
			if err != nil || i == 10 {
				t.Fatalf("StartThread (try %d): %v", i, err)
			}
		}
		testHookAbandon = nil
		checkReleased(t, tg.pid)
		left := jumpSlots(mem, tg.pid, "PyEval_RestoreThread", syms.PyEvalRestoreThread, 4096)
		gated := 0
		for _, s := range left {
			if s.holds != syms.PyEvalRestoreThread {
				gated++
			}
		}
		if gated == 0 || len(left) != len(slots) {
			t.Fatalf("%d of %d slots point to the gate left open (before: %d slots)", gated, len(left), len(slots))
		}
		// Past the deadline: the loop goes on (new wake lines), right.
		n := len(tg.lines())
		end := time.Now().Add(20 * time.Second)
		for len(tg.lines()) < n+2 && time.Now().Before(end) {
			time.Sleep(50 * time.Millisecond)
		}
		if len(tg.lines()) < n+2 {
			t.Fatalf("the target made no progress with the gate left open: %q", tg.lines())
		}
		tg.checkHealthy()
		// A thread may be found in interpreter code before a gate is
		// opened (then the slots stay with the old gate): try again.
		for i := 0; ; i++ {
			res := injectMarker(t, tg, Options{Timeout: 20 * time.Second, AvoidEINTR: strings.HasPrefix(v, "2.")})
			t.Logf("after a gate left open: %s, wall %v", res.Why, res.Wall)
			if strings.Contains(res.Why, "PyEval_RestoreThread") {
				break
			}
			if i == 10 {
				t.Fatal("no exec in 10 went through the gate")
			}
		}
		checkSlots(t, mem, tg.pid, syms.PyEvalRestoreThread, len(slots))
		tg.checkHealthy()
	})
}

// magicInCaves returns where caveMagic is found in the cave of an
// executable mapping of pid, or 0.
func magicInCaves(t *testing.T, mem *live.Process, pid int) uint64 {
	maps, err := procfs.New(pid).Maps()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if !isText(m) {
			continue
		}
		c := caveIn(mem, maps, m, 4096)
		if c == nil {
			continue
		}
		b := make([]byte, c.size)
		if _, err := mem.ReadAt(b, c.addr); err != nil {
			continue
		}
		if i := bytes.Index(b, caveMagic); i >= 0 {
			return c.addr + uint64(i)
		}
	}
	return 0
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
