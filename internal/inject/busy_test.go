package inject

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/ptrace"
)

// TestStartThreadBusyInC: the only thread of the target runs C code with
// the GIL released (ctypes calls of memmove over 64 MB) nearly all the
// time. It is never borrowed there; the gate makes it stop at the entry of
// PyEval_RestoreThread, where it is borrowed, well within the timeout.
// Afterwards every GOT slot holds PyEval_RestoreThread again, no cave
// holds pyglass code, and the target's copies stay right.
func TestStartThreadBusyInC(t *testing.T) {
	for _, v := range sortedKeys(interpreters(t)) {
		py := interpreters(t)[v]
		t.Run(v, func(t *testing.T) {
			tg := startTarget(t, py, "cbusy")
			syms := resolve(t, tg.pid)
			mem := ptrace.NewMem(tg.pid)
			defer mem.Close()
			page := uint64(4096)
			slots := jumpSlots(mem, tg.pid, "PyEval_RestoreThread", syms.PyEvalRestoreThread, page)
			if len(slots) == 0 {
				t.Fatalf("no GOT slot of PyEval_RestoreThread holds %#x", syms.PyEvalRestoreThread)
			}
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
				if got := jumpSlots(mem, tg.pid, "PyEval_RestoreThread", syms.PyEvalRestoreThread, page); len(got) != len(slots) {
					t.Fatalf("after exec %d: %d GOT slots hold PyEval_RestoreThread, before %d", i, len(got), len(slots))
				}
				if at := magicInCaves(t, mem, tg.pid); at != 0 {
					t.Fatalf("after exec %d: pyglass code left in a cave at %#x", i, at)
				}
			}
			t.Logf("%d of 3 borrowed at the gate", gated)
			time.Sleep(100 * time.Millisecond)
			tg.checkHealthy()
		})
	}
}

// magicInCaves returns where caveMagic is found in the cave of an
// executable mapping of pid, or 0.
func magicInCaves(t *testing.T, mem *ptrace.Mem, pid int) uint64 {
	maps, err := readMapLines(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.perms != "r-xp" {
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
