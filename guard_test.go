package pyglass

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// startSleeper starts the sleeper fixture (main thread and two workers)
// under in and attaches to it.
func startSleeper(t *testing.T, in testenv.Interp) (*testenv.Target, *Process) {
	t.Helper()
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("interval=0.05", "threads=2"))
	p, err := Attach(tg.PID)
	if err != nil {
		t.Fatal(err)
	}
	return tg, p
}

// hasFunction reports whether some thread of d runs function fn.
func hasFunction(d *StackDump, fn string) bool {
	for _, th := range d.Threads {
		for _, f := range th.Frames {
			if f.Function == fn {
				return true
			}
		}
	}
	return false
}

// TestStacksPanicThaws: a panic in the walk while the target's threads
// are paused (injected through inspect.TestHookWalk) comes back from Stacks as an
// ErrInternal error, and the target is left running, no thread stopped
// or traced; the next Stacks works.
func TestStacksPanicThaws(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, p := startSleeper(t, in)
		if _, err := p.Stacks(context.Background(), StackOptions{}); err != nil {
			testenv.Skipf(t, "pyglass reads no stacks of %s (%v): nothing to interrupt", in.Label, err)
		}
		calls := 0
		inspect.TestHookWalk = func() {
			calls++
			panic("injected by the test")
		}
		_, err := p.Stacks(context.Background(), StackOptions{})
		inspect.TestHookWalk = nil
		if calls == 0 {
			t.Fatalf("the hook was not reached (Stacks: %v)", err)
		}
		if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "injected by the test") {
			t.Fatalf("Stacks after a panic: %v, want ErrInternal", err)
		}
		if err := tg.Healthy(); err != nil {
			t.Fatal(err)
		}
		d, err := p.Stacks(context.Background(), StackOptions{})
		if err != nil || !hasFunction(d, "worker_wait") {
			t.Fatalf("Stacks after the panic: %v", err)
		}
		if err := tg.Healthy(); err != nil {
			t.Fatal(err)
		}
	})
}

// panicReader panics on every read once armed: a decoder panic in the
// middle of a sample, played by the memory under it.
type panicReader struct {
	r     memory.Reader
	armed *atomic.Bool
}

func (m *panicReader) ReadAt(p []byte, addr uint64) (int, error) {
	if m.armed.Load() {
		panic("injected by the test")
	}
	return m.r.ReadAt(p, addr)
}

// TestSamplePanicThaws: a panic while Sample reads the target (the
// memory panics once the first sample is in), paused or not, comes back
// as an ErrInternal error and the target is left running, no thread
// stopped or traced; a panic of the caller's callback stays the caller's.
func TestSamplePanicThaws(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, p := startSleeper(t, in)
		for _, blocking := range []bool{true, false} {
			opt := SampleOptions{Rate: 100, Duration: 20 * time.Second, Idle: true, Blocking: blocking}
			var armed atomic.Bool
			p.memHook = func(r memory.Reader) memory.Reader { return &panicReader{r: r, armed: &armed} }
			samples := 0
			_, err := p.Sample(context.Background(), opt, func(*Sample) error {
				samples++
				armed.Store(true)
				return nil
			})
			p.memHook = nil
			if samples == 0 {
				t.Fatalf("blocking %v: no sample before the panic (Sample: %v)", blocking, err)
			}
			if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "injected by the test") {
				t.Fatalf("blocking %v: Sample after a panic: %v, want ErrInternal", blocking, err)
			}
			if err := tg.Healthy(); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if r := recover(); r != "the caller's" {
						t.Errorf("blocking %v: the callback's panic came back as %v", blocking, r)
					}
				}()
				_, err := p.Sample(context.Background(), opt, func(*Sample) error { panic("the caller's") })
				t.Errorf("blocking %v: Sample returned (%v) after its callback panicked", blocking, err)
			}()
			if err := tg.Healthy(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// overlay reads block at addr and the rest from r: a copy of the target's
// _Py_DebugOffsets, corrupted, seen in place of the real one.
type overlay struct {
	r     memory.Reader
	addr  uint64
	block []byte
}

func (o *overlay) ReadAt(p []byte, addr uint64) (int, error) {
	n, err := o.r.ReadAt(p, addr)
	end := o.addr + uint64(len(o.block))
	for i := range p[:n] {
		if a := addr + uint64(i); a >= o.addr && a < end {
			p[i] = o.block[a-o.addr]
		}
	}
	return n, err
}

// TestCorruptDebugOffsetsFallback: on live 3.13+ targets, a corrupted
// copy of the process's own _Py_DebugOffsets (a forged code object size
// and first line; a moved co_filename) is fed to Stacks in place of the
// real one: the stacks are still read, with pyglass's table, and one
// warning says so. The real block gives no warning.
func TestCorruptDebugOffsetsFallback(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 13) {
			testenv.Skipf(t, "%s has no _Py_DebugOffsets (3.13+)", in.Label)
		}
		if _, err := layout.For(in.Major, in.Minor); err != nil {
			testenv.Skipf(t, "no table for %s to fall back on: %v", in.Label, err)
		}
		_, p := startSleeper(t, in)
		d, err := p.Stacks(context.Background(), StackOptions{})
		if err != nil || !hasFunction(d, "worker_wait") {
			t.Fatalf("Stacks: %v", err)
		}
		if w := p.Warnings(); len(w) != 0 {
			t.Fatalf("warnings with the real debug offsets: %q", w)
		}
		for _, c := range []struct {
			name string
			set  map[string]uint64
		}{
			{"forged code object", map[string]uint64{"code_object.size": 32, "code_object.firstlineno": 4000}},
			{"moved co_filename", map[string]uint64{"code_object.filename": 144}},
		} {
			p, err := Attach(p.pid)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			p.SetWarningHandler(func(msg string) { got = append(got, msg) })
			p.memHook = func(r memory.Reader) memory.Reader {
				img := cpython.Image{Major: in.Major, Minor: in.Minor, Symbol: p.py.Symbol}
				if p.py.Runtime.End != 0 {
					img.PyRuntime = [2]uint64{p.py.Runtime.Start, p.py.Runtime.End}
				}
				rt, ok := img.RuntimeAddr()
				if !ok {
					t.Fatal("no _PyRuntime address")
				}
				block := make([]byte, layout.DebugOffsetsSize(in.Minor))
				if err := memory.Read(r, rt, block); err != nil {
					t.Fatal(err)
				}
				for n, v := range c.set {
					if err := layouttest.SetMember(block, in.Minor, n, v); err != nil {
						t.Fatal(err)
					}
				}
				return &overlay{r: r, addr: rt, block: block}
			}
			d, err = p.Stacks(context.Background(), StackOptions{})
			if err != nil || !hasFunction(d, "worker_wait") {
				t.Fatalf("%s: Stacks: %v", c.name, err)
			}
			// Read with the table, not the corrupted offsets: file names
			// and lines are right.
			for _, th := range d.Threads {
				for _, f := range th.Frames {
					if f.Function == "worker_wait" && (!strings.HasSuffix(f.File, "/x.py") || f.Line <= 0) {
						t.Errorf("%s: worker_wait at %s:%d", c.name, f.File, f.Line)
					}
				}
			}
			// Read again: the warning is given once.
			if _, err := p.Stacks(context.Background(), StackOptions{NonBlocking: true}); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !strings.Contains(got[0], "_Py_DebugOffsets are unusable") || !strings.Contains(got[0], "own table") {
				t.Errorf("%s: warnings %q, want one about the fallback", c.name, got)
			}
		}
	})
}

// TestFreeThreadedRefused: a free-threaded build (a fake image whose
// _Py_DebugOffsets say free_threaded = 1) is refused as ErrNotPython
// (exit status 3) with one line that names it.
func TestFreeThreadedRefused(t *testing.T) {
	for _, minor := range []int{13, 14, 15} {
		l, err := layout.For(3, minor)
		if err != nil {
			t.Fatal(err)
		}
		block, err := layouttest.DebugBlock(l, 0, uint64(3<<24|minor<<16|0xf0), true)
		if err != nil {
			t.Fatal(err)
		}
		const rt = 0x7f0000100000
		var m memory.Fake
		m.Map(rt, block)
		v := pyproc.Version{Major: 3, Minor: minor, Level: "final"}
		img := cpython.Image{Major: 3, Minor: minor, Symbol: func(name string) (uint64, bool) { return rt, name == "_PyRuntime" }}
		_, err = inspect.OpenMemory(nil, &m, 4242, v, img, func(string) {})
		if !errors.Is(err, ErrNotPython) || !strings.Contains(err.Error(), "free-threaded build") ||
			!strings.Contains(err.Error(), "not support") || strings.Contains(err.Error(), "\n") || HintOf(err) == "" {
			t.Errorf("3.%d free-threaded: %v (hint %q)", minor, err, HintOf(err))
		}
	}
}

// TestNewerVersionWarns: a fake 3.16 image (the newest known version's
// debug offsets, version bumped) gets a layout and one warning, given
// once however often its layout is chosen; with offsets that fail the
// checks it is ErrNotPython, saying it is newer than pyglass knows.
func TestNewerVersionWarns(t *testing.T) {
	newest := layout.NewestDebugMinor()
	l, err := layout.For(3, newest)
	if err != nil {
		t.Skipf("no table for 3.%d: %v", newest, err)
	}
	block, err := layouttest.DebugBlock(l, 0, 0x031000f0, false)
	if err != nil {
		t.Fatal(err)
	}
	const rt = 0x7f0000100000
	img := cpython.Image{Major: 3, Minor: 16, Symbol: func(name string) (uint64, bool) { return rt, name == "_PyRuntime" }}
	p := &Process{pid: 4242, py: &pyproc.Python{Version: pyproc.Version{Major: 3, Minor: 16, Level: "final"}}}
	var got []string
	p.SetWarningHandler(func(msg string) { got = append(got, msg) })
	var m memory.Fake
	m.Map(rt, block)
	for i := 0; i < 2; i++ {
		mem, err := inspect.OpenMemory(nil, &m, p.pid, p.py.Version, img, p.warn)
		if err != nil || mem.Layout().Minor != 16 || mem.Layout().CodeCoFirstlineno != l.CodeCoFirstlineno {
			t.Fatalf("3.16: %v", err)
		}
	}
	if len(got) != 1 || !strings.Contains(got[0], "3.16 is newer than pyglass was tested on") {
		t.Errorf("warnings %q", got)
	}
	if err := layouttest.SetMember(block, newest, "code_object.firstlineno", 4000); err != nil {
		t.Fatal(err)
	}
	_, err = inspect.OpenMemory(nil, &m, p.pid, p.py.Version, img, p.warn)
	t.Logf("refused: %v", err)
	if !errors.Is(err, ErrNotPython) || !strings.Contains(err.Error(), "newer than pyglass knows") {
		t.Errorf("3.16 with bad offsets: %v", err)
	}
}
