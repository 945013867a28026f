package cpython_test

import (
	"encoding/json"
	"errors"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/internal/testenv"
)

// threadsTarget is a running threads_fixture.py.
type threadsTarget struct {
	tg   *testenv.Target
	mem  *layouttest.Mem
	img  cpython.Image
	l    *layout.Layout
	tids []int
	// names maps thread name to [ident, native id].
	names map[string][2]uint64
	main  uint64
}

// imageOf builds a cpython.Image from the ELF image of pid.
func imageOf(t *testing.T, in testenv.Interp, pid int) cpython.Image {
	t.Helper()
	e, err := layouttest.FindImage(pid)
	if err != nil {
		t.Fatal(err)
	}
	img := cpython.Image{
		Major: in.Major, Minor: in.Minor,
		Symbol: func(name string) (uint64, bool) {
			a, ok := e.Symbols[name]
			return a, ok
		},
		PyRuntime: e.Sections[".PyRuntime"],
	}
	for _, s := range []string{".data", ".bss"} {
		if r, ok := e.Sections[s]; ok {
			img.Data = append(img.Data, r)
		}
	}
	return img
}

func startThreads(t *testing.T, in testenv.Interp) *threadsTarget {
	t.Helper()
	src, err := os.ReadFile("testdata/threads_fixture.py")
	if err != nil {
		t.Fatal(err)
	}
	tg := testenv.Start(t, in, string(src))
	var rep struct {
		Threads map[string][2]uint64
		Main    uint64
	}
	for _, line := range tg.Stdout() {
		if strings.HasPrefix(line, "READY ") {
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "READY ")), &rep); err != nil {
				t.Fatal(err)
			}
		}
	}
	mem, err := layouttest.OpenMem(tg.PID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	tids, err := layouttest.TIDs(tg.PID)
	if err != nil {
		t.Fatal(err)
	}
	img := imageOf(t, in, tg.PID)
	l, err := layout.For(in.Major, in.Minor)
	if errors.Is(err, layout.ErrNoTable) {
		rt, _ := img.RuntimeAddr()
		l, err = layout.FromDebugOffsets(mem, rt)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &threadsTarget{tg: tg, mem: mem, img: img, l: l, tids: tids, names: rep.Threads, main: rep.Main}
}

// TestThreadsLive lists the threads of a real process of every
// interpreter: count, OS ids, names, main thread and GIL holder.
func TestThreadsLive(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		x := startThreads(t, in)
		interps, err := cpython.FindInterpreters(x.mem, x.img, x.l)
		if err != nil {
			t.Fatal(err)
		}
		if len(interps) != 1 {
			t.Fatalf("found %d interpreters, want 1", len(interps))
		}
		threads, err := cpython.Threads(x.mem, x.l, interps[0], cpython.ThreadOptions{Image: &x.img, TIDs: x.tids})
		if err != nil {
			t.Fatal(err)
		}
		if len(threads) != len(x.names) {
			t.Fatalf("found %d threads, fixture has %d: %+v", len(threads), len(x.names), threads)
		}
		var native []int
		mains := 0
		for _, th := range threads {
			if th.Err != nil {
				t.Errorf("thread %#x: %v", th.Addr, th.Err)
			}
			native = append(native, th.NativeID)
			want, ok := x.names[th.Name]
			if !ok {
				t.Errorf("thread %#x (ident %#x) has name %q, not one of the fixture's", th.Addr, th.ThreadID, th.Name)
			} else if want[0] != th.ThreadID {
				t.Errorf("thread %q: ident %#x, fixture says %#x", th.Name, th.ThreadID, want[0])
			} else if want[1] != 0 && want[1] != uint64(th.NativeID) {
				t.Errorf("thread %q: native id %d, fixture says %d", th.Name, th.NativeID, want[1])
			}
			if th.Main {
				mains++
				if th.ThreadID != x.main || th.Name != "MainThread" {
					t.Errorf("thread %q (ident %#x) flagged main, main is %#x", th.Name, th.ThreadID, x.main)
				}
			}
			if th.Frame == 0 {
				t.Errorf("thread %q has no frame", th.Name)
			}
		}
		if mains != 1 {
			t.Errorf("%d threads flagged main", mains)
		}
		sort.Ints(native)
		if !equalInts(native, x.tids) {
			t.Errorf("native ids %v, /proc/PID/task %v", native, x.tids)
		}

		// The spinner holds the GIL almost always. The main thread takes
		// it once more after READY (go.set(), then its sleep): on a loaded
		// machine a read can land there, so two reads of it are allowed;
		// any other holder, or more, is wrong.
		spinner := x.names["spinner"][0]
		seen, others := 0, 0
		for i := 0; i < 50 && seen < 5; i++ {
			threads, err := cpython.Threads(x.mem, x.l, interps[0], cpython.ThreadOptions{Image: &x.img, SkipNames: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, th := range threads {
				if th.HoldsGIL && th.ThreadID != spinner {
					others++
					if th.ThreadID != x.main || others > 2 {
						t.Errorf("thread %#x holds the GIL, the spinner is %#x", th.ThreadID, spinner)
					}
				}
				if th.HoldsGIL && th.ThreadID == spinner {
					seen++
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		if seen == 0 {
			t.Errorf("the spinner never seen holding the GIL")
		}
		if err := x.tg.Healthy(); err != nil {
			t.Error(err)
		}
	})
}

// TestFindInterpretersWithoutSymbols finds the interpreter with no
// symbols (the .PyRuntime section, else a scan of .data/.bss) and with a
// lying _PyRuntime symbol.
func TestFindInterpretersWithoutSymbols(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		x := startThreads(t, in)
		want, err := cpython.FindInterpreters(x.mem, x.img, x.l)
		if err != nil {
			t.Fatal(err)
		}
		noSyms := x.img
		noSyms.Symbol = nil
		// Scan only: .PyRuntime (3.10+, where the main interpreter lives
		// from 3.11 on) becomes one more data range to scan.
		scanOnly := noSyms
		if scanOnly.PyRuntime[0] != 0 {
			scanOnly.Data = append([][2]uint64{scanOnly.PyRuntime}, scanOnly.Data...)
		}
		scanOnly.PyRuntime = [2]uint64{}
		lying := x.img
		lying.Symbol = func(name string) (uint64, bool) {
			if len(x.img.Data) > 0 {
				return x.img.Data[0][0] + 128, true // somewhere in .data, not the real thing
			}
			return 0x1000, true
		}
		for name, img := range map[string]cpython.Image{"no symbols": noSyms, "scan only": scanOnly, "lying symbols": lying} {
			start := time.Now()
			got, err := cpython.FindInterpreters(x.mem, img, x.l)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if len(got) == 0 || got[0] != want[0] {
				t.Errorf("%s: found %#x, want %#x", name, got, want)
			}
			t.Logf("%s: %v", name, time.Since(start))
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
