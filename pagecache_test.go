package pyglass

import (
	"errors"
	"testing"

	"github.com/pyglass/pyglass/memory"
)

// TestPageCacheWords: the typed reads through a page cache give what
// the memory holds (also a word across two pages, and an error for an
// unmapped one), a recording cache reports the page it lacks, and a word
// of a cached page is read without an allocation (a buffer handed to
// ReadAt escapes: an allocation per word, 34,000 for 1,000 tasks).
func TestPageCacheWords(t *testing.T) {
	const base = 0x20000
	var mem memory.Fake
	b := make([]byte, 2*pageSize)
	for i := range b {
		b[i] = byte(i * 7)
	}
	mem.Map(base, b)
	c := newPageCache(&mem)
	for _, addr := range []uint64{base, base + 8, base + 13, base + pageSize - 4, base + pageSize - 3, base + pageSize + 100} {
		for _, read := range []func(memory.Reader, uint64) (uint64, error){
			func(r memory.Reader, a uint64) (uint64, error) { v, err := memory.U8(r, a); return uint64(v), err },
			func(r memory.Reader, a uint64) (uint64, error) { v, err := memory.U16(r, a); return uint64(v), err },
			func(r memory.Reader, a uint64) (uint64, error) { v, err := memory.U32(r, a); return uint64(v), err },
			memory.U64,
		} {
			want, err1 := read(&mem, addr)
			got, err2 := read(c, addr)
			if got != want || err1 != nil || err2 != nil {
				t.Errorf("at %#x: %#x, %v through the cache; %#x, %v in memory", addr, got, err2, want, err1)
			}
		}
	}
	if _, err := memory.U64(c, base+2*pageSize-4); !errors.Is(err, memory.ErrShortRead) {
		t.Errorf("a word across the end of the mapping: %v", err)
	}
	if _, err := memory.U64(c, base+4*pageSize); !errors.Is(err, memory.ErrFault) {
		t.Errorf("a word on an unmapped page: %v", err)
	}
	rec := newSnapshotCache(&mem, nil)
	rec.record = true
	if _, err := memory.U32(rec, base+16); !errors.Is(err, errMiss) || len(rec.misses) != 1 || rec.misses[0] != base {
		t.Errorf("a recording cache without the page: %v, misses %#x", err, rec.misses)
	}
	if n := testing.AllocsPerRun(100, func() {
		memory.U64(c, base+24)
		memory.U32(c, base+pageSize+4)
		memory.U8(c, base+5)
	}); n != 0 {
		t.Errorf("%v allocations per 3 words of cached pages, want 0", n)
	}
}
