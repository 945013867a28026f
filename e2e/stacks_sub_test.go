package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestStacksSubinterpreters: threads of subinterpreters are listed with
// their interpreter's number and their own frames.
func TestStacksSubinterpreters(t *testing.T) {
	script := `import threading, time, sys
try:
    import _interpreters as si
except ImportError:
    import _xxsubinterpreters as si
interp = si.create()
def run():
    try:
        si.run_string(interp, "import time\ndef in_sub():\n    time.sleep(100)\nin_sub()\n")
    except Exception as e:
        print("EXCEPTION %r" % (e,))
t = threading.Thread(target=run, name="sub-runner")
t.daemon = True
t.start()
print("READY")
sys.stdout.flush()
time.sleep(100)
`
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 12) {
			testenv.Skipf(t, "%s: subinterpreters with their own threads are testable from Python from 3.12 on", in.Label)
		}
		tg := testenv.Start(t, in, script)
		p, err := pyglass.Attach(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for i := 0; i < 50 && !found; i++ {
			d, err := p.Stacks(context.Background(), pyglass.StackOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, th := range d.Threads {
				if th.Interpreter == 0 && th.Main && th.Name != "MainThread" {
					t.Fatalf("main interpreter's main thread named %q", th.Name)
				}
				if th.Interpreter > 0 && len(th.Frames) > 0 && th.Frames[len(th.Frames)-1].Function == "in_sub" {
					found = true
				}
			}
			if !found {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !found {
			t.Fatalf("no subinterpreter thread in in_sub; target said %v", tg.Stdout())
		}
		healthy(t, tg)
	})
}
