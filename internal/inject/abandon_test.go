package inject

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// abandonSteps are the points where a test lets go of the borrowed
// thread, as if pyglass were SIGKILLed there; from "go" on the chain runs
// (the marker appears), before it the bootstrap gives up and restores.
var abandonSteps = []string{"boot", "mmap-entry", "mmap-exit", "written", "go", "mprotect-entry", "mprotect-exit", "chain"}

var abandonModes = []string{"sleep", "select", "accept", "recv", "busy", "threads"}

func stepRunsChain(step string) bool {
	switch step {
	case "go", "mprotect-entry", "mprotect-exit", "chain":
		return true
	}
	return false
}

// TestAbandonAtEveryStep: pyglass "dies" at every step of the setup,
// including right after the first change of the thread's registers; the
// thread must finish or undo the setup and restore itself, the target
// must see nothing (Python 2.7 raises on EINTR, the fixture reports any
// exception or early return), and the marker runs exactly when the chain
// was released.
func TestAbandonAtEveryStep(t *testing.T) {
	var which sync.Map // pid -> *string (the step to abandon at)
	testHookAbandon = func(pid int, step string) bool {
		v, ok := which.Load(pid)
		return ok && *v.(*string) == step
	}
	t.Cleanup(func() { testHookAbandon = nil }) // after the parallel subtests
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, mode := range abandonModes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				tg := startTarget(t, in, mode)
				syms := resolve(t, tg.pid)
				var step string
				which.Store(tg.pid, &step)
				defer which.Delete(tg.pid)
				opt := Options{AvoidEINTR: in.Major == 2}
				for _, s := range abandonSteps {
					step = s
					path, inside := tg.marker()
					res, err := StartThread(tg.pid, syms, []byte(markerSrc(inside)), opt)
					if err != nil {
						t.Fatalf("step %s: %v", s, err)
					}
					if !strings.Contains(res.Why, "code cave") || strings.Contains(res.Why, "no code cave") {
						t.Fatalf("step %s: no cave used: %s", s, res.Why)
					}
					checkReleased(t, tg.pid)
					if stepRunsChain(s) {
						waitFile(t, path, 10*time.Second)
					} else {
						// The bootstrap gives up after ~200 ms.
						t0 := time.Now()
						for res.Scratch != 0 && mapped(tg.pid, res.Scratch) && time.Since(t0) < 5*time.Second {
							time.Sleep(10 * time.Millisecond)
						}
						if res.Scratch != 0 && mapped(tg.pid, res.Scratch) {
							t.Errorf("step %s: scratch mapping %#x not unmapped", s, res.Scratch)
						} else if res.Scratch != 0 {
							t.Logf("step %s: scratch unmapped after %v", s, time.Since(t0))
						}
						// A marker must not appear: give a wrongly
						// started thread time to write it (this
						// waits for something not to happen).
						time.Sleep(300 * time.Millisecond)
						if _, err := os.Stat(path); err == nil {
							t.Errorf("step %s: marker ran", s)
						}
					}
					tg.checkHealthy()
				}
				step = ""
				// Normal injections afterwards (stale caves are skipped or reused).
				for i := 0; i < 3; i++ {
					injectMarker(t, tg, opt)
				}
				tg.progresses()
			})
		}
	})
}

// TestNoCaveFallback: without a cave the old setup path still works and
// says so.
func TestNoCaveFallback(t *testing.T) {
	testHookNoCave = true
	t.Cleanup(func() { testHookNoCave = false })
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "select")
		res := injectMarker(t, tg, Options{AvoidEINTR: in.Major == 2})
		if !strings.Contains(res.Why, "no code cave") {
			t.Errorf("Why = %q, want the fallback named", res.Why)
		}
		tg.progresses()
	})
}

// TestCaveRestored: after a normal injection the cave holds its original
// bytes again.
func TestCaveRestored(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "sleep")
		syms := resolve(t, tg.pid)
		var logs []string
		res, err := StartThread(tg.pid, syms, []byte("pass\n"), Options{Log: func(s string) { logs = append(logs, s) }})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			if strings.Contains(l, "left modified") || strings.Contains(l, "restoring code cave") {
				t.Errorf("log: %s", l)
			}
		}
		i := strings.Index(res.Why, "code cave at ")
		var addr uint64
		if i < 0 {
			t.Fatalf("no cave address in %q", res.Why)
		}
		if _, err := fmt.Sscanf(res.Why[i+len("code cave at "):], "%v", &addr); err != nil {
			t.Fatalf("no cave address in %q", res.Why)
		}
		m := make([]byte, 64)
		f, err := os.Open(fmt.Sprintf("/proc/%d/mem", tg.pid))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadAt(m, int64(addr))
		f.Close()
		if err != nil {
			t.Fatalf("reading the cave at %#x: %v", addr, err)
		}
		if strings.Contains(string(m), "pyglass-cave") {
			t.Errorf("cave at %#x still holds the bootstrap", addr)
		}
		tg.checkHealthy()
	})
}
