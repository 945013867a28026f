package inject

import (
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

func checkReleased(t *testing.T, pid int) {
	t.Helper()
	st, err := procfs.New(pid).Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.TracerPid != 0 {
		t.Errorf("TracerPid = %d after StartThread", st.TracerPid)
	}
	tids, _ := procfs.New(pid).TaskIDs()
	for _, tid := range tids {
		if st, err := taskState(pid, tid); err == nil && (st == 't' || st == 'T') {
			t.Errorf("thread %d left in state %c", tid, st)
		}
	}
}

// inject runs a marker script in the target and checks every promise:
// marker written, thread released, scratch mapping freed.
func injectMarker(t *testing.T, tg *target, opt Options) Result {
	t.Helper()
	syms := resolve(t, tg.pid)
	path, inside := tg.marker()
	res, err := StartThread(tg.pid, syms, []byte(markerSrc(inside)), opt)
	if err != nil {
		t.Fatalf("StartThread: %v", err)
	}
	checkReleased(t, tg.pid)
	got := waitFile(t, path, 10*time.Second)
	if !strings.HasPrefix(got, "pid=") {
		t.Fatalf("marker = %q", got)
	}
	end := time.Now().Add(5 * time.Second)
	for mapped(tg.pid, res.Scratch) && !res.Leaked {
		if time.Now().After(end) {
			t.Fatalf("scratch mapping %#x still present", res.Scratch)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("thread %d (%s), strategy %s, held %v, wall %v, marker %q", res.Thread, res.Why, res.Strategy, res.Held, res.Wall, got)
	return res
}

func TestStartThreadAllInterpreters(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, mode := range []string{"sleep", "threads"} {
			t.Run(mode, func(t *testing.T) {
				tg := startTarget(t, in, mode)
				injectMarker(t, tg, Options{AvoidEINTR: in.Major == 2})
				// a second injection takes the normal path everywhere
				injectMarker(t, tg, Options{AvoidEINTR: in.Major == 2})
				tg.progresses()
			})
		}
	})
}
