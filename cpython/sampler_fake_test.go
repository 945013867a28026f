package cpython

import (
	"fmt"
	"testing"

	"github.com/pyglass/pyglass/memory"
)

// notReadReader answers ErrNotRead for the page at miss, as the sampler's
// page cache does for memory it gathers into a later read.
type notReadReader struct {
	r    memory.Reader
	miss uint64
}

func (n *notReadReader) ReadAt(p []byte, addr uint64) (int, error) {
	if addr&^4095 == n.miss {
		return 0, ErrNotRead
	}
	return n.r.ReadAt(p, addr)
}

// TestSamplerNoAllocs checks that a Sampler reads a stack whose code
// objects it knows without allocating, also when its reader answers
// ErrNotRead (returned as is, not wrapped): at thousands of samples a
// second, allocation per frame is most of a profiler's cost.
func TestSamplerNoAllocs(t *testing.T) {
	for _, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) {
			top, s, dst := sampledFakeStack(t, h)
			var err error
			if allocs := testing.AllocsPerRun(100, func() { dst, err = s.Stack(top, 0, dst) }); allocs != 0 || err != nil || len(dst) != 3 {
				t.Errorf("Stack of 3 known frames: %v allocations per call (err %v, %d frames), want none", allocs, err, len(dst))
			}
			s.SetReader(&notReadReader{r: h.m, miss: top &^ 4095})
			if allocs := testing.AllocsPerRun(100, func() { dst, err = s.Stack(top, 0, dst) }); allocs != 0 || err != ErrNotRead {
				t.Errorf("Stack over memory not read yet: %v allocations per call, err %v; want none, ErrNotRead itself", allocs, err)
			}
		})
	}
}

// TestSamplerRevalidate: Revalidate keeps the code objects that read the
// same and drops one whose name now points elsewhere (its address reused
// by another code object), which is then decoded again.
func TestSamplerRevalidate(t *testing.T) {
	for _, v := range fakeVersions {
		h := newFakeHeap(t, v[0], v[1])
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) {
			top, s, dst := sampledFakeStack(t, h)
			var err error
			n := len(s.d.codes)
			s.Revalidate(h.m)
			if len(s.d.codes) != n {
				t.Fatalf("%d of %d unchanged code objects kept", len(s.d.codes), n)
			}
			g := dst[0].Code
			other := h.str("h", 1, false)
			h.set64(g, h.l.CodeCoName, other)
			if h.l.CodeCoQualname >= 0 {
				h.set64(g, h.l.CodeCoQualname, other)
			}
			s.Revalidate(h.m)
			if _, kept := s.d.codes[g]; kept || len(s.d.codes) != n-1 {
				t.Fatalf("after the name of %#x changed: %d code objects kept (it among them: %v), want %d", g, len(s.d.codes), kept, n-1)
			}
			if dst, err = s.Stack(top, 0, dst); err != nil || dst[0].Function != "h" {
				t.Errorf("the changed code object read again as %q (%v), want h", dst[0].Function, err)
			}
		})
	}
}

// sampledFakeStack builds h's three-frame stack and a Sampler that has
// read it once (its code objects cached).
func sampledFakeStack(t *testing.T, h *fakeHeap) (uint64, *Sampler, []SampleFrame) {
	t.Helper()
	top := h.fakeStack()
	s := NewSampler(h.m, h.l)
	dst, err := s.Stack(top, 0, nil)
	if err != nil || len(dst) != 3 {
		t.Fatalf("Stack: %d frames, %v", len(dst), err)
	}
	return top, s, dst
}
