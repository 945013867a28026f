package live

import (
	"bytes"
	"os"
	"testing"
	"unsafe"

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
