package cpython_test

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// fakeBase is where fakeProc's memory starts.
const fakeBase = 0x10000

// fakeProc is one contiguous block of memory holding an interpreter
// with three threads, a GIL and a _PyRuntime, laid out for l.
type fakeProc struct {
	l   *layout.Layout
	buf []byte
	// addresses
	runtime, interp, dictType, gil uint64
	dicts, threads                 [3]uint64
	// used is how many bytes of buf the structures take.
	used int
}

func (p *fakeProc) put(addr, v uint64) {
	binary.LittleEndian.PutUint64(p.buf[addr-fakeBase:], v)
}

func (p *fakeProc) put32(addr uint64, v uint32) {
	binary.LittleEndian.PutUint32(p.buf[addr-fakeBase:], v)
}

func newFakeProc(t testing.TB, major, minor int) *fakeProc {
	l, err := layout.For(major, minor)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProc{l: l, buf: make([]byte, 64<<10)}
	next := uint64(fakeBase + 0x100)
	alloc := func(n int) uint64 {
		a := next
		next += uint64(n+15) &^ 15
		return a
	}
	p.runtime = alloc(2048)
	p.dictType = alloc(512)
	name := alloc(16)
	copy(p.buf[name-fakeBase:], "dict\x00")
	p.put(p.dictType+uint64(l.TypeTpName), name)
	p.put(p.dictType+uint64(l.TypeTpFlags), 1<<29)
	for i := range p.dicts {
		p.dicts[i] = alloc(64)
		p.put(p.dicts[i]+uint64(l.ObjectObType), p.dictType)
	}
	p.interp = alloc(max(l.InterpModules, l.InterpBuiltins, l.InterpSysdict, l.InterpThreadsMain, l.InterpCevalGil, l.InterpTstateHead, l.InterpNext) + 64)
	p.put(p.interp+uint64(l.InterpModules), p.dicts[0])
	p.put(p.interp+uint64(l.InterpSysdict), p.dicts[1])
	p.put(p.interp+uint64(l.InterpBuiltins), p.dicts[2])
	for i := range p.threads {
		p.threads[i] = alloc(512)
	}
	for i, th := range p.threads {
		p.put(th+uint64(l.TstateInterp), p.interp)
		p.put(th+uint64(l.TstateThreadID), 0x7f0000001000+uint64(i)*0x1000)
		if l.TstateNativeThreadID >= 0 {
			p.put(th+uint64(l.TstateNativeThreadID), 100+uint64(i))
		}
		if i+1 < len(p.threads) {
			p.put(th+uint64(l.TstateNext), p.threads[i+1])
		}
	}
	p.put(p.interp+uint64(l.InterpTstateHead), p.threads[0])
	if l.RuntimeInterpretersHead >= 0 {
		p.put(p.runtime+uint64(l.RuntimeInterpretersHead), p.interp)
	}
	if l.RuntimeInterpretersMain >= 0 {
		p.put(p.runtime+uint64(l.RuntimeInterpretersMain), p.interp)
	}
	if l.InterpThreadsMain >= 0 { // 3.13+
		p.put(p.interp+uint64(l.InterpThreadsMain), p.threads[2])
	}
	if l.RuntimeMainThread >= 0 { // the oldest thread is the main one
		p.put(p.runtime+uint64(l.RuntimeMainThread), 0x7f0000001000+2*0x1000)
	}
	if l.InterpCevalGil >= 0 {
		p.gil = alloc(256)
		p.put(p.interp+uint64(l.InterpCevalGil), p.gil)
		p.put32(p.gil+uint64(l.GilLocked), 1)
		p.put(p.gil+uint64(l.GilLastHolder), p.threads[1])
	}
	p.used = int(next - fakeBase)
	return p
}

func (p *fakeProc) mem() *memory.Fake {
	var f memory.Fake
	f.Map(fakeBase, p.buf)
	return &f
}

func (p *fakeProc) image(lie bool) cpython.Image {
	return cpython.Image{
		Major: p.l.Major, Minor: p.l.Minor,
		Symbol: func(name string) (uint64, bool) {
			if name != "_PyRuntime" && name != "interp_head" {
				return 0, false
			}
			if lie {
				return fakeBase + 8, true
			}
			if name == "interp_head" {
				return p.runtime, true // the fake stores the head there
			}
			return p.runtime, true
		},
	}
}

func TestFindInterpretersFake(t *testing.T) {
	for _, v := range [][2]int{{2, 7}, {3, 6}, {3, 9}, {3, 11}, {3, 12}, {3, 13}, {3, 14}, {3, 15}} {
		p := newFakeProc(t, v[0], v[1])
		if p.l.RuntimeInterpretersHead < 0 {
			p.put(p.runtime, p.interp) // interp_head
		}
		r := p.mem()
		got, err := cpython.FindInterpreters(r, p.image(false), p.l)
		if err != nil || len(got) != 1 || got[0] != p.interp {
			t.Errorf("%v: symbols: got %#x, %v; want %#x", v, got, err, p.interp)
		}
		img := p.image(true)
		if _, err := cpython.FindInterpreters(r, img, p.l); !errors.Is(err, cpython.ErrNoInterpreter) {
			t.Errorf("%v: lying symbol, nothing to scan: got %v, want ErrNoInterpreter", v, err)
		}
		img.Data = [][2]uint64{{fakeBase, fakeBase + uint64(len(p.buf))}}
		got, err = cpython.FindInterpreters(r, img, p.l)
		if err != nil || len(got) != 1 || got[0] != p.interp {
			t.Errorf("%v: lying symbol + scan: got %#x, %v; want %#x", v, got, err, p.interp)
		}
		// A thread that belongs elsewhere makes the interpreter invalid.
		p.put(p.threads[2]+uint64(p.l.TstateInterp), p.interp+8)
		if _, err := cpython.FindInterpreters(p.mem(), p.image(false), p.l); !errors.Is(err, cpython.ErrNoInterpreter) {
			t.Errorf("%v: foreign thread: got %v, want ErrNoInterpreter", v, err)
		}
		// So does a sysdict that is not a dict.
		p = newFakeProc(t, v[0], v[1])
		if p.l.RuntimeInterpretersHead < 0 {
			p.put(p.runtime, p.interp)
		}
		p.put(p.interp+uint64(p.l.InterpSysdict), p.threads[0])
		if _, err := cpython.FindInterpreters(p.mem(), p.image(false), p.l); !errors.Is(err, cpython.ErrNoInterpreter) {
			t.Errorf("%v: sysdict not a dict: got %v, want ErrNoInterpreter", v, err)
		}
	}
}

func TestThreadsFake(t *testing.T) {
	for _, v := range [][2]int{{3, 12}, {3, 13}, {3, 14}, {3, 15}} {
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) { testThreadsFake(t, v[0], v[1]) })
	}
}

func testThreadsFake(t *testing.T, major, minor int) {
	p := newFakeProc(t, major, minor)
	img := p.image(false)
	threads, err := cpython.Threads(p.mem(), p.l, p.interp, cpython.ThreadOptions{Image: &img, SkipNames: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(threads) != 3 {
		t.Fatalf("got %d threads", len(threads))
	}
	for i, th := range threads {
		if th.Addr != p.threads[i] || th.NativeID != 100+i {
			t.Errorf("thread %d: %+v", i, th)
		}
		if th.HoldsGIL != (i == 1) {
			t.Errorf("thread %d: HoldsGIL %v", i, th.HoldsGIL)
		}
		if th.Main != (i == 2) {
			t.Errorf("thread %d: Main %v", i, th.Main)
		}
	}
	// A cycle is reported, with the threads read before it.
	p.put(p.threads[2]+uint64(p.l.TstateNext), p.threads[0])
	threads, err = cpython.Threads(p.mem(), p.l, p.interp, cpython.ThreadOptions{SkipNames: true})
	if !errors.Is(err, cpython.ErrCycle) || len(threads) != 3 {
		t.Errorf("cycle: %d threads, %v", len(threads), err)
	}
	// The GIL released: nobody holds it.
	p.put(p.threads[2]+uint64(p.l.TstateNext), 0)
	p.put32(p.gil+uint64(p.l.GilLocked), 0)
	threads, _ = cpython.Threads(p.mem(), p.l, p.interp, cpython.ThreadOptions{Image: &img, SkipNames: true})
	for _, th := range threads {
		if th.HoldsGIL {
			t.Errorf("thread %#x holds a released GIL", th.Addr)
		}
	}
}

// TestPthreadTIDs finds OS thread ids inside fake glibc struct pthreads
// (before 3.11 there is no native_thread_id).
func TestPthreadTIDs(t *testing.T) {
	p := newFakeProc(t, 3, 9)
	var f memory.Fake
	f.Map(fakeBase, p.buf)
	tids := []int{4242, 4243, 4244}
	for i := range p.threads {
		pt := make([]byte, 4096)
		binary.LittleEndian.PutUint32(pt[0x2d0:], uint32(tids[i]))
		binary.LittleEndian.PutUint32(pt[0x40:], uint32(tids[0])) // a decoy in one thread only
		f.Map(0x7f0000001000+uint64(i)*0x1000, pt)
	}
	threads, err := cpython.Threads(&f, p.l, p.interp, cpython.ThreadOptions{TIDs: tids, SkipNames: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, th := range threads {
		if th.NativeID != tids[i] {
			t.Errorf("thread %d: native id %d, want %d", i, th.NativeID, tids[i])
		}
	}
}

// TestPthreadTIDsNewThreads: threads created after the task list was read
// have tids not in it; a field that holds the process's id in every
// struct pthread then matches in more threads than the tid field does.
// No thread is given another's task: the new ones stay unknown (0). (The
// old vote by threads gave all of them the main thread's task.) The tie
// between the two fields is broken by where glibc keeps the tid on the
// target's machine, whichever machine pyglass runs on (a core may come
// from another).
func TestPthreadTIDsNewThreads(t *testing.T) {
	for _, mc := range []struct {
		machine elf.Machine
		tidOff  int
	}{{elf.EM_X86_64, 0x2d0}, {elf.EM_AARCH64, 0xd0}} {
		p := newFakeProc(t, 3, 6)
		var f memory.Fake
		f.Map(fakeBase, p.buf)
		real := []int{4242, 4250, 4251}
		known := []int{4242} // the main thread's; the others started since
		for i := range p.threads {
			pt := make([]byte, 4096)
			binary.LittleEndian.PutUint32(pt[mc.tidOff:], uint32(real[i]))
			binary.LittleEndian.PutUint32(pt[0x40:], uint32(real[0])) // the process's id, in every struct
			f.Map(0x7f0000001000+uint64(i)*0x1000, pt)
		}
		threads, err := cpython.Threads(&f, p.l, p.interp, cpython.ThreadOptions{TIDs: known, SkipNames: true, Machine: mc.machine})
		if err != nil {
			t.Fatal(err)
		}
		for i, th := range threads {
			want := 0
			if real[i] == known[0] {
				want = known[0]
			}
			if th.NativeID != want {
				t.Errorf("%v: thread %d (tid %d, not yet listed unless %d): native id %d, want %d", mc.machine, i, real[i], known[0], th.NativeID, want)
			}
		}
	}
}

// TestPthreadTIDsSharedPthread: two thread states of one thread (a stale
// one and its successor share its struct pthread) both get its task;
// only different struct pthreads that read the same task lose it.
func TestPthreadTIDsSharedPthread(t *testing.T) {
	p := newFakeProc(t, 3, 6)
	var f memory.Fake
	f.Map(fakeBase, p.buf)
	tids := []int{4242, 4250}
	for i := range tids {
		pt := make([]byte, 4096)
		binary.LittleEndian.PutUint32(pt[0x2d0:], uint32(tids[i]))
		f.Map(0x7f0000001000+uint64(i)*0x1000, pt)
	}
	// The third thread state names the second one's struct pthread.
	p.put(p.threads[2]+uint64(p.l.TstateThreadID), 0x7f0000002000)
	threads, err := cpython.Threads(&f, p.l, p.interp, cpython.ThreadOptions{TIDs: tids, SkipNames: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{4242, 4250, 4250} {
		if threads[i].NativeID != want {
			t.Errorf("thread %d: native id %d, want %d", i, threads[i].NativeID, want)
		}
	}
}

// FuzzThreads feeds random memory to FindInterpreters and Threads: they
// must neither panic nor loop forever.
//
// Inputs are kept small (the seeds hold only the fake interpreter, data
// is cut at maxFuzzData): the fuzzing engine minimizes every input that
// finds new coverage by removing bytes, which costs up to n² runs, and the
// scans of FindInterpreters are bounded by the image's data size, which
// here is the input's. Minimizing a 4 KiB input still takes up to
// -fuzzminimizetime (60 s) per new input, shown as 0 execs/s: run it
// with e.g. -fuzzminimizetime=2000x.
func FuzzThreads(f *testing.F) {
	for _, v := range [][2]int{{2, 7}, {3, 9}, {3, 12}} {
		p := newFakeProc(f, v[0], v[1])
		f.Add(byte(v[1]), p.buf[:min(p.used, maxFuzzData)])
	}
	f.Add(byte(0), []byte{})
	layouts := fuzzLayouts(f)
	f.Fuzz(func(t *testing.T, minor byte, data []byte) {
		runThreadsFuzz(layouts, minor, data)
	})
}

// maxFuzzData bounds the memory image of one FuzzThreads input.
const maxFuzzData = 4 << 10

// fuzzVersions are the layouts FuzzThreads picks from by its minor byte.
var fuzzVersions = [][2]int{{2, 7}, {3, 6}, {3, 9}, {3, 11}, {3, 12}, {3, 13}, {3, 14}, {3, 15}}

func fuzzLayouts(t testing.TB) []*layout.Layout {
	var out []*layout.Layout
	for _, v := range fuzzVersions {
		l, err := layout.For(v[0], v[1])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// runThreadsFuzz is one input of FuzzThreads (the decoders only read the
// layouts).
func runThreadsFuzz(layouts []*layout.Layout, minor byte, data []byte) {
	if len(data) > maxFuzzData {
		data = data[:maxFuzzData]
	}
	i := int(minor) % len(fuzzVersions)
	v, l := fuzzVersions[i], layouts[i]
	var m memory.Fake
	m.Map(fakeBase, data)
	img := cpython.Image{
		Major: v[0], Minor: v[1],
		Symbol: func(string) (uint64, bool) { return fakeBase + 0x100, true },
		Data:   [][2]uint64{{fakeBase, fakeBase + uint64(len(data))}},
	}
	interps, _ := cpython.FindInterpreters(&m, img, l)
	interps = append(interps, fakeBase+0x100, fakeBase+uint64(len(data)/2)&^7)
	for _, in := range interps {
		cpython.Threads(&m, l, in, cpython.ThreadOptions{Image: &img, TIDs: []int{1, 2, 3}})
		cpython.GILHolder(&m, img, l, in)
	}
}
