package live

import (
	"bytes"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/memory"
)

// TestReadV reads this process's own memory with vectored reads: readable
// segments are filled, an unreadable one in the middle gets its error and
// does not stop the ones after it.
func TestReadV(t *testing.T) {
	p, err := Open(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srcs := [][]byte{[]byte("first segment"), []byte("second"), bytes.Repeat([]byte{7}, 5000)}
	addr := func(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
	segs := []memory.Segment{
		{Addr: addr(srcs[0]), Buf: make([]byte, len(srcs[0]))},
		{Addr: 8, Buf: make([]byte, 8)}, // page zero: never mapped
		{Addr: addr(srcs[1]), Buf: make([]byte, len(srcs[1]))},
		{Addr: addr(srcs[2]), Buf: make([]byte, len(srcs[2]))},
		{Addr: addr(srcs[0]), Buf: nil},
	}
	for round := 0; round < 2; round++ {
		p.ReadV(segs)
		if segs[1].Err == nil {
			t.Errorf("round %d: reading page zero succeeded", round)
		}
		for i, want := range [][]byte{srcs[0], nil, srcs[1], srcs[2]} {
			if want == nil {
				continue
			}
			if segs[i].Err != nil || !bytes.Equal(segs[i].Buf, want) {
				t.Errorf("round %d: segment %d: err %v, got %q", round, i, segs[i].Err, segs[i].Buf[:min(len(segs[i].Buf), 20)])
			}
		}
		if segs[4].Err != nil {
			t.Errorf("empty segment: %v", segs[4].Err)
		}
	}
	// Many segments: more than one system call's worth.
	many := make([]memory.Segment, 2500)
	for i := range many {
		many[i] = memory.Segment{Addr: addr(srcs[1]), Buf: make([]byte, len(srcs[1]))}
	}
	p.ReadV(many)
	for i := range many {
		if many[i].Err != nil || !bytes.Equal(many[i].Buf, srcs[1]) {
			t.Fatalf("segment %d of 2500: %v %q", i, many[i].Err, many[i].Buf)
		}
	}
}

// TestReadVJoined: segments close to each other are read as one range
// (the bytes between them go elsewhere): each still gets its own bytes,
// and a segment next to a page that cannot be read fails alone, whether
// that page lies between two segments or holds one of them.
func TestReadVJoined(t *testing.T) {
	p, err := Open(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const pg = 4096
	mem, err := unix.Mmap(-1, 0, 5*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i*7 + i/pg)
	}
	// Pages 0, 1, 3 and 4 readable; page 2 not.
	if err := unix.Mprotect(mem[2*pg:3*pg], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	type want struct {
		off, n int
		ok     bool
	}
	cases := [][]want{
		// Same page, small gaps, and touching: one range.
		{{10, 8, true}, {100, 16, true}, {116, 4, true}, {4000, 96, true}},
		// The next page: joined across the boundary.
		{{pg - 64, 8, true}, {pg + 8, 8, true}, {pg + 100, 200, true}},
		// Page 2 between page 1 and page 3: never joined, both read.
		{{2*pg - 16, 8, true}, {3*pg + 8, 8, true}},
		// Page 2 holds the second: it fails, the first and third do not.
		{{2*pg - 16, 8, true}, {2*pg + 8, 8, false}, {3*pg + 100, 8, true}},
		// A segment that ends on page 2, then one on page 3.
		{{pg + 10, 8, true}, {2*pg - 8, 16, false}, {3*pg + 4, 8, true}, {4*pg + 4, 8, true}},
		// Page 2 between, the gap exactly a page: not joined.
		{{2*pg - 8, 8, true}, {3 * pg, 8, true}},
		// Out of order and overlapping: read as separate ranges.
		{{3 * pg, 64, true}, {pg, 64, true}, {pg + 32, 64, true}},
	}
	for ci, ws := range cases {
		segs := make([]memory.Segment, len(ws))
		for i, w := range ws {
			segs[i] = memory.Segment{Addr: base + uint64(w.off), Buf: make([]byte, w.n)}
		}
		for round := 0; round < 2; round++ {
			p.ReadV(segs)
			for i, w := range ws {
				s := segs[i]
				switch {
				case !w.ok && s.Err == nil:
					t.Errorf("case %d, segment %d (+%d): read, want an error", ci, i, w.off)
				case w.ok && s.Err != nil:
					t.Errorf("case %d, segment %d (+%d): %v", ci, i, w.off, s.Err)
				case w.ok && !bytes.Equal(s.Buf, mem[w.off:w.off+w.n]):
					t.Errorf("case %d, segment %d (+%d): got % x, want % x", ci, i, w.off, s.Buf, mem[w.off:w.off+w.n])
				}
			}
		}
	}
}
