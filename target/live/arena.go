package live

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Arena is memory for copies of a target's pages: one anonymous mapping
// that the kernel may back with transparent huge pages (MADV_HUGEPAGE),
// so that filling it costs a page fault per 2 MiB instead of one per
// 4 KiB page (on a virtual machine a fault on fresh memory can cost
// 10-15 µs: 1,000 pages, 15 ms). The mapping reserves address space
// only; what is used is faulted in as it is touched. Bytes hands out
// zeroed slices of it; Release unmaps it, after which no slice it gave
// may be used. Without the mapping (mmap failed, or used up), Bytes
// allocates on the Go heap.
type Arena struct {
	whole []byte // the mapping as mmap returned it
	mem   []byte // its part aligned to hugePage
	off   int
}

// hugePage is the size and alignment of a transparent huge page on amd64
// and on arm64 with 4 KiB pages; with other page sizes the advice is moot.
const hugePage = 2 << 20

// NewArena reserves size bytes (rounded up to a multiple of hugePage).
func NewArena(size int) *Arena {
	size = (size + hugePage - 1) &^ (hugePage - 1)
	b, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return &Arena{}
	}
	skip := 0
	if rem := int(uintptr(unsafe.Pointer(&b[0])) % hugePage); rem != 0 {
		skip = hugePage - rem
	}
	mem := b[skip : skip+size : skip+size]
	unix.Madvise(mem, unix.MADV_HUGEPAGE) // a hint: without it, small pages
	return &Arena{whole: b, mem: mem}
}

// NewSmallArena returns an arena of size bytes (rounded up to pages)
// whose pages are all faulted in now, by one system call (MAP_POPULATE):
// for a read that needs them at once, during a pause, and too few to
// warrant a huge page (whose fault may wait for the kernel to compact
// memory: 5 ms seen here).
func NewSmallArena(size int) *Arena {
	size = (size + 4095) &^ 4095
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return &Arena{}
	}
	unix.Madvise(b, unix.MADV_NOHUGEPAGE)
	return &Arena{whole: b, mem: b}
}

// Bytes returns n zeroed bytes.
func (a *Arena) Bytes(n int) []byte {
	if a == nil || n < 0 || a.off+n > len(a.mem) {
		return make([]byte, n)
	}
	b := a.mem[a.off : a.off+n : a.off+n]
	a.off += n
	return b
}

// Release unmaps the arena: nothing Bytes returned may be used after.
func (a *Arena) Release() {
	if a != nil && a.whole != nil {
		unix.Munmap(a.whole)
		a.whole, a.mem = nil, nil
	}
}
