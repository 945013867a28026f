package inspect

import (
	"errors"
	"fmt"
	"slices"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/memory"
)

// pageSize is the unit of pageCache: no larger than any page size of the
// supported architectures, so a cached unit is readable as a whole or
// not at all.
const pageSize = 4096

// pageCache reads the target a page at a time and keeps what it read: the
// one memory reader of a snapshot (the threads paused, one try of a
// non-blocking read, one sample), during which the target's memory is
// taken as unchanging. A page that cannot be read is remembered as such,
// and reads that touch it go to the underlying reader, so errors are
// classified there (fault, short read, process gone).
//
// For the sampler it is emptied by reset without freeing its pages (no
// allocation in steady state), it reads behind pages below a page it
// misses in the same system call (from 3.11 a thread's frames are
// contiguous in its data stack, callers below), and in record mode a page
// it lacks is not read but noted in misses (read later with the other
// threads' in one vectored read).
type pageCache struct {
	r        memory.Reader
	pages    map[uint64]*[pageSize]byte // nil: unreadable
	maxPages int                        // pages kept at most
	maxRead  int                        // larger reads bypass the cache
	behind   int
	block    []byte
	free     []*[pageSize]byte
	used     []*[pageSize]byte
	record   bool
	misses   []uint64
	arena    pageSource // where new pages come from (nil: the Go heap)
	// ahead is how many pages past one it misses the cache reads in the
	// same system call (those not cached yet), while it holds less than
	// half its pages: objects allocated together sit on adjacent pages.
	// marks, when not nil, records which words of each page were read
	// (see sameUsed).
	ahead    int
	marks    map[uint64]*pageMarks
	markBase uint64 // marks' last page, and its marks
	lastMark *pageMarks
	// part holds the pages of which only a range was read (the
	// sampler's: what a walk touched at the last sample), as lo<<16|hi:
	// a read outside the range is a miss.
	part map[uint64]uint32
	// touched, when not nil, collects the ranges read through the
	// cache (at most maxHintPages pages): what a sampled stack's walk
	// needs, read ahead at the next sample.
	touched []pageRange
	// touchLost is set when a read while touched is collected was not
	// recorded in it (more pages than it keeps, a read too large for
	// the cache): touched is then not all the walk read.
	touchLost bool
	// The page of the last read and its range: a walk reads the same
	// page again and again.
	lastBase       uint64
	lastPage       *[pageSize]byte
	lastOK         bool
	lastLo, lastHi int
}

// pageRange is the bytes [lo, hi) of the page at base.
type pageRange struct {
	base   uint64
	lo, hi int
}

// pageMarks has a bit per 8-byte word of a page: set when a read used a
// byte of it.
type pageMarks [pageSize / 8 / 64]uint64

// mark records that the n bytes at offset off of the page at base were
// read.
func (c *pageCache) mark(base uint64, off, n int) {
	if c.marks == nil || n <= 0 {
		return
	}
	m := c.lastMark
	if m == nil || c.markBase != base {
		if m = c.marks[base]; m == nil {
			m = new(pageMarks)
			c.marks[base] = m
		}
		c.markBase, c.lastMark = base, m
	}
	for w := off / 8; w <= (off+n-1)/8; w++ {
		m[w/64] |= 1 << (w % 64)
	}
}

// errMiss is what a recording page cache returns for a page it does not
// have: the sampler's decoder passes it up unwrapped.
var errMiss = cpython.ErrNotRead

// newPageCache returns the cache of one snapshot: up to 16 MiB.
func newPageCache(r memory.Reader) *pageCache {
	return newPageCacheIn(r, nil)
}

// pageSource hands out zeroed memory for a cache's pages: a live.Arena,
// faulted in before a pause (the first write to a fresh heap page is a
// fault inside the read's system call: 124 pages of a 10-thread stacks
// read took 1.0 ms of reads into fresh pages, 0.35 ms into faulted-in
// ones). nil: the Go heap.
type pageSource interface {
	Bytes(n int) []byte
}

// newPageCacheIn returns a cache whose pages come from src (nil: the
// heap); nothing it returns may be used after src is released.
func newPageCacheIn(r memory.Reader, src pageSource) *pageCache {
	return &pageCache{r: r, pages: map[uint64]*[pageSize]byte{}, maxPages: 4096, maxRead: 64 * pageSize, arena: src}
}

// newSampleCache returns the sampler's cache: up to 1 MiB, reused.
func newSampleCache(r memory.Reader, behind int) *pageCache {
	return &pageCache{r: r, pages: map[uint64]*[pageSize]byte{}, maxPages: 256, maxRead: 4 * pageSize,
		behind: behind, block: make([]byte, (behind+1)*pageSize), part: map[uint64]uint32{}}
}

// reset empties the cache, keeping its pages for reuse.
func (c *pageCache) reset() {
	clear(c.pages)
	clear(c.marks)
	c.lastMark = nil
	clear(c.part)
	c.lastOK, c.lastPage = false, nil
	c.free = append(c.free, c.used...)
	c.used = c.used[:0]
}

func (c *pageCache) newPage() *[pageSize]byte {
	if k := len(c.free); k > 0 {
		pg := c.free[k-1]
		c.free = c.free[:k-1]
		return pg
	}
	if c.arena != nil {
		return (*[pageSize]byte)(c.arena.Bytes(pageSize))
	}
	return new([pageSize]byte)
}

// bytes returns n zeroed bytes from the cache's source, else the heap.
func (c *pageCache) bytes(n int) []byte {
	if c.arena != nil {
		return c.arena.Bytes(n)
	}
	return make([]byte, n)
}

// maxPrefetch bounds the pages one Prefetch reads.
const maxPrefetch = 256

// Prefetch reads the pages holding the n bytes at each of addrs that the
// cache lacks, in one vectored read (memory.Prefetcher): a dict's keys
// are objects on as many pages, which one by one cost a system call each
// (sys.modules: a hundred, in the threads' pause). Pages that cannot be
// read are not recorded: the reads that follow meet them and report
// why. Not in record mode (the sampler notes its misses), nor past half
// the cache's size.
func (c *pageCache) Prefetch(addrs []uint64, n int) {
	if c.record || n <= 0 || n > pageSize {
		return
	}
	var bases []uint64
	seen := map[uint64]bool{}
	for _, a := range addrs {
		if a+uint64(n) < a {
			continue
		}
		for b := a &^ (pageSize - 1); b < a+uint64(n); b += pageSize {
			if _, ok := c.pages[b]; !ok && !seen[b] {
				seen[b] = true
				bases = append(bases, b)
			}
		}
		if len(bases) >= maxPrefetch {
			break
		}
	}
	if len(bases) < 2 || len(c.used)+len(bases) > c.maxPages/2 {
		return // one page: the read that needs it costs the same
	}
	slices.Sort(bases)
	segs := make([]memory.Segment, len(bases))
	for i, b := range bases {
		segs[i] = memory.Segment{Addr: b, Buf: c.newPage()[:]}
	}
	memory.ReadV(c.r, segs)
	for _, s := range segs {
		pg := (*[pageSize]byte)(s.Buf)
		if s.Err != nil {
			c.free = append(c.free, pg)
			continue
		}
		c.used = append(c.used, pg)
		c.pages[s.Addr] = pg
	}
}

// fill reads the page at base (and the ones below it, see behind) into
// the cache; it returns nil when the page cannot be read whole.
func (c *pageCache) fill(base uint64) *[pageSize]byte {
	if n := c.behind; n > 0 && base >= uint64(n)*pageSize && len(c.used)+n+1 <= c.maxPages {
		lo := base - uint64(n)*pageSize
		fresh := true
		for a := lo; a < base; a += pageSize {
			if _, ok := c.pages[a]; ok {
				fresh = false
				break
			}
		}
		if fresh {
			if k, err := c.r.ReadAt(c.block, lo); err == nil && k == len(c.block) {
				var pg *[pageSize]byte
				for i := 0; i <= n; i++ {
					pg = c.newPage()
					copy(pg[:], c.block[i*pageSize:])
					c.used = append(c.used, pg)
					c.pages[lo+uint64(i)*pageSize] = pg
				}
				return pg
			}
		}
	}
	if pg := c.fillAhead(base); pg != nil {
		return pg
	}
	pg := c.newPage()
	if k, err := c.r.ReadAt(pg[:], base); err != nil || k != pageSize {
		c.free = append(c.free, pg)
		return nil
	}
	c.used = append(c.used, pg)
	return pg
}

// fillAhead reads the page at base and up to c.ahead pages after it that
// the cache lacks, in one read, and keeps those after it; nil when it
// reads nothing (no page to add, or the range is not readable whole:
// fill then reads base alone).
func (c *pageCache) fillAhead(base uint64) *[pageSize]byte {
	if c.ahead <= 0 || len(c.used)+c.ahead+1 > c.maxPages/2 || base > ^uint64(0)-uint64(c.ahead+1)*pageSize {
		return nil
	}
	n := 1
	for n <= c.ahead {
		if _, ok := c.pages[base+uint64(n)*pageSize]; ok {
			break
		}
		n++
	}
	if n == 1 {
		return nil
	}
	blk := c.bytes(n * pageSize)
	if k, err := c.r.ReadAt(blk, base); err != nil || k != len(blk) {
		return nil
	}
	for i := 1; i < n; i++ {
		pg := (*[pageSize]byte)(blk[i*pageSize:])
		c.used = append(c.used, pg)
		c.pages[base+uint64(i)*pageSize] = pg
	}
	pg := (*[pageSize]byte)(blk)
	c.used = append(c.used, pg)
	return pg
}

// page returns the cached page at base (nil: not cached, or unreadable)
// and the range of it that was read, through the one-entry cache of the
// last page used.
func (c *pageCache) page(base uint64) (*[pageSize]byte, int, int) {
	if c.lastOK && base == c.lastBase {
		return c.lastPage, c.lastLo, c.lastHi
	}
	pg := c.pages[base]
	if pg == nil {
		return nil, 0, 0
	}
	lo, hi := 0, pageSize
	if v, partial := c.part[base]; partial {
		lo, hi = int(v>>16), int(v&0xffff)
	}
	c.lastBase, c.lastPage, c.lastOK, c.lastLo, c.lastHi = base, pg, true, lo, hi
	return pg, lo, hi
}

// Word implements memory.WordReader: a word within a page the cache
// holds. Anything else (a page not read yet, unreadable, or a word across
// two pages) is ReadAt's, which fills, records a miss or reports.
func (c *pageCache) Word(addr uint64, size int) (uint64, bool) {
	base := addr &^ (pageSize - 1)
	off := int(addr - base)
	if off+size > pageSize {
		return 0, false
	}
	pg, lo, hi := c.page(base)
	if pg == nil || off < lo || off+size > hi {
		return 0, false // ReadAt's: read whole, noted as a miss, or reported
	}
	if c.touched != nil {
		c.touch(base, off, off+size)
	}
	c.mark(base, off, size)
	b := pg[off : off+size]
	switch size {
	case 1:
		return uint64(b[0]), true
	case 2:
		return uint64(memory.Order.Uint16(b)), true
	case 4:
		return uint64(memory.Order.Uint32(b)), true
	case 8:
		return memory.Order.Uint64(b), true
	}
	return 0, false
}

// ReadAt implements memory.Reader.
func (c *pageCache) ReadAt(p []byte, addr uint64) (int, error) {
	if end := addr + uint64(len(p)); end < addr || len(p) > c.maxRead {
		c.touchLost = c.touchLost || c.touched != nil
		return c.r.ReadAt(p, addr) // wrapping or large: not worth caching
	}
	n := 0
	for n < len(p) {
		a := addr + uint64(n)
		base := a &^ (pageSize - 1)
		var pg *[pageSize]byte
		var ok bool
		lo, hi := 0, pageSize
		if c.lastOK && base == c.lastBase {
			pg, ok, lo, hi = c.lastPage, true, c.lastLo, c.lastHi
		} else {
			pg, ok = c.pages[base]
			if ok && pg != nil {
				if v, partial := c.part[base]; partial {
					lo, hi = int(v>>16), int(v&0xffff)
				}
				c.lastBase, c.lastPage, c.lastOK, c.lastLo, c.lastHi = base, pg, true, lo, hi
			}
		}
		off := int(a - base)
		end := min(pageSize, off+len(p)-n)
		if c.touched != nil {
			c.touch(base, off, end)
		}
		if ok && pg != nil && (off < lo || end > hi) {
			// Only part of the page was read: read it whole (noted as a
			// miss in record mode).
			if c.record {
				ok = false
			} else {
				c.lastOK = false
				if k, err := c.r.ReadAt(pg[:], base); err == nil && k == pageSize {
					delete(c.part, base)
				} else {
					c.pages[base] = nil
					pg = nil
				}
			}
		}
		if !ok && c.record {
			if !slices.Contains(c.misses, base) {
				c.misses = append(c.misses, base)
			}
			return n, errMiss
		}
		if !ok {
			if len(c.used) >= c.maxPages {
				m, err := c.r.ReadAt(p[n:], a)
				return n + m, err
			}
			pg = c.fill(base)
			c.pages[base] = pg
		}
		if pg == nil {
			m, err := c.r.ReadAt(p[n:], a)
			if n > 0 && m == 0 && errors.Is(err, memory.ErrFault) {
				err = fmt.Errorf("reading %#x: %w", a, memory.ErrShortRead)
			}
			return n + m, err
		}
		k := copy(p[n:], pg[off:end])
		c.mark(base, off, k)
		n += k
	}
	return n, nil
}

// touch adds the bytes [lo, hi) of the page at base to c.touched.
func (c *pageCache) touch(base uint64, lo, hi int) {
	for i := len(c.touched) - 1; i >= 0; i-- {
		if t := &c.touched[i]; t.base == base {
			t.lo, t.hi = min(t.lo, lo), max(t.hi, hi)
			return
		}
	}
	if len(c.touched) < maxHintPages {
		c.touched = append(c.touched, pageRange{base, lo, hi})
	} else {
		c.touchLost = true
	}
}
