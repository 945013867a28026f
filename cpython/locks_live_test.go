package cpython_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestLockLayoutsLive checks the lock layouts of cpython/locks.go on a
// real process of every interpreter: free and held Locks, RLocks free,
// held twice by the main thread and held by another thread (its owner
// read from the object: _thread.RLock's rlock_owner or
// _PyRecursiveMutex.thread, 2.7's Python _RLock's owner attribute).
func TestLockLayoutsLive(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		src, err := os.ReadFile("testdata/locks_fixture.py")
		if err != nil {
			t.Fatal(err)
		}
		tg := testenv.Start(t, in, string(src))
		var addr map[string]uint64
		for _, line := range tg.Stdout() {
			if rest, ok := strings.CutPrefix(line, "READY "); ok {
				if err := json.Unmarshal([]byte(rest), &addr); err != nil {
					t.Fatal(err)
				}
			}
		}
		mem, err := layouttest.OpenMem(tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		img := imageOf(t, in, tg.PID)
		rt, _ := img.RuntimeAddr()
		l, _, err := layout.ForTarget(mem, rt, in.Major, in.Minor)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			kind   string
			locked int
			owner  string
		}{
			{"free", cpython.SyncLock, 0, ""},
			{"held", cpython.SyncLock, 1, ""},
			{"rfree", cpython.SyncRLock, 0, ""},
			{"rheld", cpython.SyncRLock, 1, "main"},
			{"rother", cpython.SyncRLock, 1, "other"},
		} {
			s, err := cpython.ReadSync(mem, l, addr[c.name])
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			want := uint64(0)
			if c.owner != "" {
				want = addr[c.owner]
			}
			if s.Kind != c.kind || s.Locked != c.locked || (c.kind == cpython.SyncRLock && s.Owner != want) {
				t.Errorf("%s: %+v, want %s locked=%d owner %#x", c.name, s, c.kind, c.locked, want)
			}
			if s.Futex == [2]uint64{} && s.ParkAddr == 0 {
				t.Errorf("%s: %+v: no futex and no park address", c.name, s)
			}
		}
		healthy := tg.Healthy()
		if healthy != nil {
			t.Fatal(healthy)
		}
	})
}
