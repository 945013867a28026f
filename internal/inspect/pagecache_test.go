package inspect

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
	mem := patterned(base, 2, 7)
	c := newPageCache(mem)
	for _, addr := range []uint64{base, base + 8, base + 13, base + pageSize - 4, base + pageSize - 3, base + pageSize + 100} {
		for _, read := range []func(memory.Reader, uint64) (uint64, error){
			func(r memory.Reader, a uint64) (uint64, error) { v, err := memory.U8(r, a); return uint64(v), err },
			func(r memory.Reader, a uint64) (uint64, error) { v, err := memory.U16(r, a); return uint64(v), err },
			func(r memory.Reader, a uint64) (uint64, error) { v, err := memory.U32(r, a); return uint64(v), err },
			memory.U64,
		} {
			want, err1 := read(mem, addr)
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
	rec := newSnapshotCache(mem, nil)
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

// TestPageCacheReadAhead: a cache that reads ahead fills the pages after
// a miss in the same read, lists for the pause only the pages a read
// used, and reads a page alone when the range ahead is not readable
// whole (the end of a mapping).
func TestPageCacheReadAhead(t *testing.T) {
	const base = 0x40000
	var mem memory.Fake
	mem.Map(base, make([]byte, 6*pageSize)) // then a hole
	rc := &readCount{r: &mem}
	c := newSnapshotCache(rc, nil)
	c.marks = map[uint64]*pageMarks{}
	c.ahead = 3
	for _, a := range []uint64{base, base + pageSize + 8, base + 2*pageSize, base + 3*pageSize} {
		if _, err := memory.U64(c, a); err != nil {
			t.Fatal(err)
		}
	}
	if rc.reads != 1 {
		t.Errorf("4 adjacent pages: %d reads, want 1", rc.reads)
	}
	// Pages 4 and 5, then the hole: the read ahead fails, page 4 is read
	// alone, then 5 (its next is the hole too).
	for _, a := range []uint64{base + 4*pageSize, base + 5*pageSize} {
		if _, err := memory.U64(c, a); err != nil {
			t.Fatal(err)
		}
	}
	if rc.reads != 5 {
		t.Errorf("2 pages before a hole: %d reads in all, want 5 (2 that fail whole, 2 alone, 1 before)", rc.reads)
	}
	if _, err := memory.U64(c, base+7*pageSize); !errors.Is(err, memory.ErrFault) {
		t.Errorf("in the hole: %v", err)
	}
	// Of 4 pages read, one used: the pause copies that one.
	c2 := newSnapshotCache(&mem, nil)
	c2.marks = map[uint64]*pageMarks{}
	c2.ahead = 3
	memory.U64(c2, base)
	if got := c2.pageList(); len(got) != 1 || got[0] != base || len(c2.pages) != 4 {
		t.Errorf("one page used of 4 read: listed %#x of %d", got, len(c2.pages))
	}
}

// TestPageCacheWordsOfPartPages: a page the sampler read only in part
// holds stale bytes outside its range (pages are reused); a word read
// there must come from the target (the page read whole), or be a miss in
// record mode, never the stale bytes. Words read are noted in the ranges
// the next sample reads.
func TestPageCacheWordsOfPartPages(t *testing.T) {
	const base = 0x40000
	var mem memory.Fake
	b := make([]byte, pageSize)
	for i := range b {
		b[i] = byte(i*5 + 3)
	}
	mem.Map(base, b)
	for _, record := range []bool{false, true} {
		c := newSampleCache(&mem, 0)
		c.record = record
		pg := c.newPage()
		for i := range pg {
			pg[i] = 0xee // stale
		}
		copy(pg[64:128], b[64:128])
		c.used = append(c.used, pg)
		c.pages[base] = pg
		c.part[base] = 64<<16 | 128
		c.touched = []pageRange{}
		if v, err := memory.U64(c, base+64); err != nil || v != memory.Order.Uint64(b[64:]) {
			t.Errorf("record=%v: a word inside the range: %#x, %v", record, v, err)
		}
		v, err := memory.U64(c, base+256)
		switch {
		case record && !errors.Is(err, errMiss):
			t.Errorf("record=%v: a word outside the range: %#x, %v; want a miss", record, v, err)
		case !record && (err != nil || v != memory.Order.Uint64(b[256:])):
			t.Errorf("record=%v: a word outside the range: %#x, %v; want %#x from the target", record, v, err, memory.Order.Uint64(b[256:]))
		}
		if len(c.touched) != 1 || c.touched[0].lo > 64 || c.touched[0].hi < 72 {
			t.Errorf("record=%v: touched %+v, want the word at 64 noted", record, c.touched)
		}
	}
}

// patterned is fake memory of pages pages at base, byte i being i*mul.
func patterned(base uint64, pages, mul int) *memory.Fake {
	var mem memory.Fake
	b := make([]byte, pages*pageSize)
	for i := range b {
		b[i] = byte(i * mul)
	}
	mem.Map(base, b)
	return &mem
}

// vecCount is a memory.VectorReader over r that counts its calls.
type vecCount struct {
	r            memory.Reader
	reads, readV int
	pages        int // segments of the vectored reads
}

func (c *vecCount) ReadAt(p []byte, addr uint64) (int, error) {
	c.reads++
	return c.r.ReadAt(p, addr)
}

func (c *vecCount) ReadV(segs []memory.Segment) {
	c.readV++
	c.pages += len(segs)
	memory.ReadEach(c.r, segs)
}

// TestPageCachePrefetch: Prefetch brings the pages of scattered ranges in
// with one vectored read (each page once, a range across two pages both),
// after which reads of those ranges make no call; a page it cannot read
// is not recorded, and the read that meets it reports the fault. A
// recording cache, one page, or what would fill over half the cache, is
// left alone.
func TestPageCachePrefetch(t *testing.T) {
	const base = 0x40000
	mem := patterned(base, 8, 13)
	vc := &vecCount{r: mem}
	c := newPageCache(vc)
	unmapped := uint64(base + 20*pageSize)
	addrs := []uint64{base + 5*pageSize + 8, base + 16, base + 2*pageSize - 10, base + 5*pageSize + 64, unmapped}
	c.Prefetch(addrs, 24)
	if vc.readV != 1 || vc.pages != 5 || vc.reads != 0 {
		t.Fatalf("one Prefetch: %d vectored reads of %d pages and %d reads; want 1 of 5 (pages 0, 1, 2, 5 and the unmapped one), 0", vc.readV, vc.pages, vc.reads)
	}
	for _, a := range addrs[:4] {
		want, _ := memory.U64(mem, a+16)
		if got, err := memory.U64(c, a+16); err != nil || got != want {
			t.Errorf("at %#x: %#x, %v; want %#x", a+16, got, err, want)
		}
	}
	if vc.reads != 0 || vc.readV != 1 {
		t.Errorf("reads of prefetched pages made %d reads and %d more vectored ones", vc.reads, vc.readV-1)
	}
	if _, err := memory.U64(c, unmapped); !errors.Is(err, memory.ErrFault) {
		t.Errorf("the unmapped page after a Prefetch: %v, want a fault", err)
	}
	before := *vc
	c.Prefetch([]uint64{base + 3*pageSize}, 8) // one page: left to the read
	c.Prefetch(addrs[:4], 24)                  // all cached
	rec := newSnapshotCache(vc, nil)
	rec.record = true
	rec.Prefetch([]uint64{base, base + 7*pageSize}, 8)
	small := newPageCache(vc)
	small.maxPages = 2
	small.Prefetch([]uint64{base, base + 7*pageSize}, 8)
	if vc.readV != before.readV || vc.reads != before.reads {
		t.Errorf("Prefetches that should do nothing made %d vectored reads and %d reads", vc.readV-before.readV, vc.reads-before.reads)
	}
}

// readCount counts the reads (system calls, on a live target) made
// through it: each ReadAt and each ReadV is one.
type readCount struct {
	r     memory.Reader
	reads int
}

func (c *readCount) ReadAt(p []byte, addr uint64) (int, error) {
	c.reads++
	return c.r.ReadAt(p, addr)
}

func (c *readCount) ReadV(segs []memory.Segment) {
	c.reads++
	memory.ReadV(c.r, segs)
}
