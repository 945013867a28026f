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
			top := h.fakeStack()
			s := NewSampler(h.m, h.l)
			dst, err := s.Stack(top, 0, nil)
			if err != nil || len(dst) != 3 {
				t.Fatalf("Stack: %d frames, %v", len(dst), err)
			}
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
