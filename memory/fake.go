package memory

import (
	"fmt"
	"sort"
)

// Fake is an address space made of byte slices, for unit tests of
// decoders. It is not safe for concurrent writes.
type Fake struct {
	regions []region
}

type region struct {
	addr uint64
	data []byte
}

// Map adds data at addr. Regions must not overlap.
func (f *Fake) Map(addr uint64, data []byte) {
	f.regions = append(f.regions, region{addr, data})
	sort.Slice(f.regions, func(i, j int) bool { return f.regions[i].addr < f.regions[j].addr })
}

// ReadAt implements Reader. Reads may span adjacent regions.
func (f *Fake) ReadAt(p []byte, addr uint64) (int, error) {
	n := 0
	for n < len(p) {
		a := addr + uint64(n)
		i := sort.Search(len(f.regions), func(i int) bool { return f.regions[i].addr > a }) - 1
		if i < 0 || a >= f.regions[i].addr+uint64(len(f.regions[i].data)) {
			if n == 0 {
				return 0, fmt.Errorf("%#x: %w", a, ErrFault)
			}
			return n, fmt.Errorf("%#x: %w", a, ErrShortRead)
		}
		r := f.regions[i]
		n += copy(p[n:], r.data[a-r.addr:])
	}
	return n, nil
}
