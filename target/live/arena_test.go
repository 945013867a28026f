package live

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestArena: Bytes hands out zeroed, writable slices that do not
// overlap, from the heap once the mapping is used up or released.
func TestArena(t *testing.T) {
	a := NewArena(1) // one huge page
	if len(a.mem) != hugePage {
		t.Fatalf("mapped %d bytes, want %d", len(a.mem), hugePage)
	}
	var all [][]byte
	for i := 0; i < hugePage/4096; i++ {
		b := a.Bytes(4096)
		for _, c := range b {
			if c != 0 {
				t.Fatalf("slice %d is not zeroed", i)
			}
		}
		b[0], b[4095] = byte(i), byte(i)
		all = append(all, b)
	}
	for i, b := range all {
		if b[0] != byte(i) || b[4095] != byte(i) || cap(b) != 4096 {
			t.Fatalf("slice %d was overwritten or can grow into the next", i)
		}
	}
	more := a.Bytes(8192) // past the mapping: the heap
	if len(more) != 8192 || &more[0] == &a.mem[0] {
		t.Fatalf("past the mapping: %d bytes", len(more))
	}
	a.Release()
	a.Release() // twice: nothing more
	if b := a.Bytes(16); len(b) != 16 || a.mem != nil {
		t.Fatalf("after Release: %d bytes, mapping %v", len(b), a.mem != nil)
	}
}

// TestSmallArena: NewSmallArena's pages are resident once it returns
// (mincore), and it hands out slices as NewArena's does.
func TestSmallArena(t *testing.T) {
	a := NewSmallArena(5000) // two pages
	defer a.Release()
	if len(a.mem) != 8192 {
		t.Fatalf("mapped %d bytes, want 8192", len(a.mem))
	}
	vec := make([]byte, 2)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&a.mem[0])), uintptr(len(a.mem)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	if vec[0]&1 == 0 || vec[1]&1 == 0 {
		t.Errorf("pages not resident after NewSmallArena: mincore %v", vec)
	}
	b, c := a.Bytes(4096), a.Bytes(4096)
	if &b[0] != &a.mem[0] || &c[0] != &a.mem[4096] || cap(b) != 4096 {
		t.Fatalf("slices not taken in turn from the mapping")
	}
	if d := a.Bytes(1); len(d) != 1 {
		t.Fatalf("past the mapping: %d bytes", len(d))
	}
}
