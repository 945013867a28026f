package cpython

import (
	"math/rand/v2"
	"testing"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// TestLocksRandomMemory feeds random memory to the lock decoders: they
// return errors or results, never panic or loop.
func TestLocksRandomMemory(t *testing.T) {
	for _, v := range [][2]int{{2, 7}, {3, 9}, {3, 12}, {3, 14}, {3, 15}} {
		l, err := layout.For(v[0], v[1])
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(v[1]), 7))
		for i := 0; i < 300; i++ {
			f := &memory.Fake{}
			base := uint64(0x10000)
			b := make([]byte, 1<<14)
			for j := range b {
				b[j] = byte(rng.IntN(256))
			}
			// Pointers back into the mapping, so the walk goes deep.
			for j := 0; j+8 <= len(b); j += 8 {
				if rng.IntN(3) == 0 {
					memory.Order.PutUint64(b[j:], base+uint64(rng.IntN(len(b))))
				}
			}
			f.Map(base, b)
			obj := base + uint64(rng.IntN(len(b)))
			ReadSync(f, l, obj)
			AttrNameOf(f, l, obj, base)
			ClassName(f, l, obj)
			ParkedAt(f, l, obj)
			DequeLen(f, l, obj)
			InstanceAttr(f, l, obj, "queue")
			FrameRefs(f, l, Frame{Code: base + uint64(rng.IntN(len(b))), Addr: obj})
		}
	}
}
