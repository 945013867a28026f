package cpython_test

import (
	"testing"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/memory"
)

// debugBlockAddr is where FuzzWalk maps its _Py_DebugOffsets block.
const debugBlockAddr = 0x7f0000100000

// FuzzWalk feeds a random _Py_DebugOffsets block through
// layout.ForTarget and, with whatever layout comes out of it (the
// target's own offsets when they pass the checks, else the table of the
// version), walks random memory as pyglass stacks does: interpreters,
// threads and their names, the GIL holder, every thread's frames with
// locals, and a string, repr, dict and attribute at an address of the
// input; as pyglass record does (the Sampler: every thread's stack, its
// code objects, a revalidation); and as pyglass locks does (what each
// frame refers to, the lock, class, deque and attributes at that
// address, a parked futex). Nothing may panic; any layout ForTarget
// returns must validate.
//
// Inputs are kept small (mem is cut at maxFuzzData); run it with e.g.
// -fuzzminimizetime=200x (see FuzzThreads).
func FuzzWalk(f *testing.F) {
	for _, v := range [][2]int{{3, 13}, {3, 14}, {3, 15}} {
		p := newFakeProc(f, v[0], v[1])
		block, err := layouttest.DebugBlock(p.l, 0, uint64(v[0])<<24|uint64(v[1])<<16|0xf0, false)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(block, uint8(v[1]), p.buf[:min(p.used, maxFuzzData)], uint32(p.interp-fakeBase))
		forged := append([]byte(nil), block...)
		if err := layouttest.SetMember(forged, v[1], "code_object.size", 32); err != nil {
			f.Fatal(err)
		}
		f.Add(forged, uint8(v[1]), p.buf[:min(p.used, maxFuzzData)], uint32(p.threads[0]-fakeBase))
		// The same offsets as a newer version's (3.16): used as they
		// are when they pass the checks, so mutations reach the walk.
		if v[1] == layout.NewestDebugMinor() {
			newer := append([]byte(nil), block...)
			newer[10] = 16
			f.Add(newer, uint8(16), p.buf[:min(p.used, maxFuzzData)], uint32(p.interp-fakeBase))
		}
	}
	f.Add([]byte{}, uint8(16), []byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, block []byte, minor uint8, mem []byte, at uint32) {
		if len(mem) > maxFuzzData {
			mem = mem[:maxFuzzData]
		}
		var m memory.Fake
		m.Map(fakeBase, mem)
		m.Map(debugBlockAddr, block)
		l, _, err := layout.ForTarget(&m, debugBlockAddr, 3, int(minor%20))
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("ForTarget gave an invalid layout: %v", err)
		}
		img := cpython.Image{
			Major: l.Major, Minor: l.Minor,
			Symbol: func(string) (uint64, bool) { return fakeBase + 0x100, true },
			Data:   [][2]uint64{{fakeBase, fakeBase + uint64(len(mem))}},
		}
		interps, _ := cpython.FindInterpreters(&m, img, l)
		interps = append(interps, fakeBase+uint64(at)&^7)
		s := cpython.NewSampler(&m, l)
		refs := cpython.NewRefReader(&m, l)
		var stack []cpython.SampleFrame
		for _, in := range interps {
			threads, _ := cpython.Threads(&m, l, in, cpython.ThreadOptions{Image: &img, TIDs: []int{1, 2, 3}})
			cpython.GILHolder(&m, img, l, in)
			cpython.GILRange(&m, img, l, in)
			cpython.ThreadNames(&m, l, in)
			for _, th := range threads {
				if th.Frame == 0 {
					continue
				}
				frames, _ := cpython.Frames(&m, l, th.Frame, cpython.FrameOptions{Locals: true, MaxDepth: 64})
				for _, f := range frames {
					refs.Refs(f)
				}
				top, _, _ := s.TopFrame(th.Addr)
				stack, _ = s.Stack(top, 64, stack)
				stack, _ = s.Stack(th.Frame, 64, stack)
				if len(stack) > 64 {
					t.Fatalf("%d sampled frames", len(stack))
				}
				for _, sf := range stack {
					s.Code(sf.Code)
				}
			}
		}
		s.Revalidate(&m)
		obj := fakeBase + uint64(at)
		cpython.String(&m, l, obj, cpython.MaxNameLen)
		cpython.Repr(&m, l, obj)
		cpython.DictItems(&m, l, obj, 64)
		cpython.AttrGet(&m, l, obj, "_name")
		cpython.Frames(&m, l, obj, cpython.FrameOptions{Locals: true, MaxDepth: 64})
		s.Stack(obj, 64, stack)
		cpython.TypeName(&m, l, obj)
		cpython.Int(&m, l, obj)
		cpython.Float(&m, l, obj)
		cpython.Len(&m, l, obj)
		cpython.TupleItems(&m, l, obj, 64)
		cpython.ReadSync(&m, l, obj)
		cpython.ClassName(&m, l, obj)
		cpython.DequeLen(&m, l, obj)
		cpython.InstanceAttr(&m, l, obj, "owner")
		cpython.AttrNameOf(&m, l, obj, fakeBase+0x100)
		cpython.ParkedAt(&m, l, obj)
	})
}
