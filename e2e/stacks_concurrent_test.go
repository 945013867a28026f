package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestStacksConcurrent: six `pyglass stacks` on one target at once, five
// times: another pyglass's pause lasts a millisecond, so each waits for
// it and succeeds (exit 0, every thread). Traced by something else, stacks
// refuses at once (exit 4) and never tells root to run as root. Four
// goroutines of one program calling Stacks at once all succeed too.
func TestStacksConcurrent(t *testing.T) {
	lockThread(t) // traceFromHere
	forLabels(t, []string{"2.7", "3.12"}, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("threads=20", "interval=0.05"))
		pid := strconv.Itoa(tg.PID)
		for round := 0; round < 5; round++ {
			var wg sync.WaitGroup
			results := make([]result, 6)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = run(t, nil, "stacks", pid)
				}()
			}
			wg.Wait()
			for i, r := range results {
				if r.Code != 0 || strings.Count(r.Stdout, "\nThread ") != 21 {
					t.Errorf("round %d, run %d: %s", round, i, r)
				}
			}
		}
		// The same through the library, six goroutines of this process
		// at once (another goroutine's pause is waited for too; this
		// many, often enough, to see a refusal whose tracer let go
		// before it was looked at).
		errs := make(chan error, 6*30)
		var wg sync.WaitGroup
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := pyglass.Attach(tg.PID)
				if err != nil {
					errs <- err
					return
				}
				for n := 0; n < 30; n++ {
					d, err := p.Stacks(context.Background(), pyglass.StackOptions{})
					if err == nil && len(d.Threads) != 21 {
						err = fmt.Errorf("%d threads", len(d.Threads))
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Stacks in one process: %v", err)
		}
		healthy(t, tg)
		noTraces(t, tg)

		release := traceFromHere(t, tg.PID)
		r := run(t, nil, "stacks", pid)
		release()
		want(t, r, 4)
		oneLineErr(t, r, "trace")
		if os.Geteuid() == 0 && strings.Contains(r.Stderr, "as root") {
			t.Errorf("root is told to run as root: %q", r.Stderr)
		}
		if r.Took > 500*time.Millisecond+baseline(t, pid) {
			t.Errorf("traced by another program, stacks took %v to refuse", r.Took)
		}
		time.Sleep(100 * time.Millisecond)
		healthy(t, tg)
		noTraces(t, tg)
	})
}

// baseline is how long a plain `pyglass stacks` of pid takes now.
func baseline(t *testing.T, pid string) time.Duration {
	r := run(t, nil, "stacks", pid)
	want(t, r, 0)
	return r.Took
}
