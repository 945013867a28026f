package inspect

import (
	mathbits "math/bits"
	"slices"
	"time"

	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target/live"
)

// A paused snapshot read in short pauses.
//
// pausedRead runs a read (a walk over the target's memory that is
// meaningful only on a consistent snapshot: task registries, coroutine
// chains) while pausing the target's threads for as little as it can: the
// walk first runs on the running target, only to learn which pages it
// touches; then the threads are paused while exactly those pages are
// copied, in one vectored read, and thawed. When the copy holds the
// bytes the first walk read, the same (the target did not change them
// meanwhile: an idle or hung program, or one busy with other objects,
// even on the same pages), that walk decoded the snapshot and its
// result stands: a walk is a function of the bytes it reads, so the
// same bytes make the same walk. Otherwise the walk runs again on the copy
// alone, a page it lacks noted instead of read. A walk that
// needed a page the first pass did not (the target changed meanwhile)
// gets another pause with those pages added, up to snapshotRounds times;
// after that, or when the walk touches more than the cache holds, it
// runs whole while the threads are paused, as Stacks does. Either way
// every byte the final walk decodes was read during one pause.
//
// It is shared by the commands that read a snapshot bigger than the
// threads' own frames (Tasks); Stacks and Locks keep their own pause.

// snapshotRounds bounds the pauses pausedRead tries before falling back
// to a walk while paused.
const snapshotRounds = 3

// snapshotPages bounds the pages one snapshot copies (64 MiB).
const snapshotPages = 16384

// pausedRead runs read on a snapshot of the target's memory r (see above)
// and returns read's error and how long the threads were paused in all
// (freezes included). freeze pauses every thread; its error is returned
// as is.
func pausedRead(r memory.Reader, freeze func() (thaw func(), err error), read func(memory.Reader) error) (paused time.Duration, err error) {
	// The pages of the walks and copies below (2 x 2.2 MiB for 1,000
	// tasks), in huge pages where the kernel has them. The caches
	// holding them die with this call: reads copy out of a page, and
	// nothing else keeps one.
	arena := live.NewArena(2 * snapshotPages * pageSize)
	defer arena.Release()
	warm := newSnapshotCache(r, arena)
	warm.marks = map[uint64]*pageMarks{}
	warm.ahead = 3
	warmErr := read(warm) // on the running target: which pages
	pages := warm.pageList()
	overflow := len(warm.used) >= warm.maxPages
	for round := 0; round < snapshotRounds && !overflow; round++ {
		snap := newSnapshotCache(r, arena)
		segs := pageSegments(pages, arena)
		t0 := time.Now()
		retry, err := copyFrozen(freeze, snap, segs)
		paused += time.Since(t0)
		if err != nil {
			return paused, err
		}
		snap.keepAll(segs, retry)
		if round == 0 && snap.sameUsed(warm) {
			// Every byte the first walk decoded is what the pause
			// copied: that walk's result is the snapshot's.
			return paused, warmErr
		}
		snap.record = true
		err = read(snap)
		if len(snap.misses) == 0 {
			return paused, err
		}
		pages = append(pages, snap.misses...)
		overflow = len(pages) > snapshotPages
	}
	t0 := time.Now()
	thaw, err := freeze()
	if err != nil {
		return paused, err
	}
	defer func() { thaw(); paused += time.Since(t0) }()
	return paused, read(newPageCache(r))
}

// sameUsed reports whether c holds, of every page of o (a cache that
// marks), the bytes o's reads used, the same (an unreadable page in
// both). A walk is a function of the bytes it reads: when they are all
// the same in c, that walk on o is the walk on c.
func (c *pageCache) sameUsed(o *pageCache) bool {
	for a, opg := range o.pages {
		if opg != nil && o.marks[a] == nil {
			continue // read ahead, never used: not copied
		}
		pg, ok := c.pages[a]
		if !ok || (pg == nil) != (opg == nil) {
			return false
		}
		m := o.marks[a]
		if pg == nil || m == nil {
			continue
		}
		for i, bits := range m {
			for bits != 0 {
				w := (i*64 + mathbits.TrailingZeros64(bits)) * 8
				if *(*[8]byte)(pg[w:]) != *(*[8]byte)(opg[w:]) {
					return false
				}
				bits &= bits - 1
			}
		}
	}
	return true
}

// copyFrozen copies segs into snap while the threads are paused.
func copyFrozen(freeze func() (func(), error), snap *pageCache, segs []memory.Segment) ([]memory.Segment, error) {
	thaw, err := freeze()
	if err != nil {
		return nil, err
	}
	defer thaw()
	return snap.copyPages(segs), nil
}

// newSnapshotCache returns a page cache that keeps up to snapshotPages
// pages and caches reads of any size (none bypasses it), its pages from
// arena.
func newSnapshotCache(r memory.Reader, arena *live.Arena) *pageCache {
	return &pageCache{r: r, pages: map[uint64]*[pageSize]byte{}, maxPages: snapshotPages, maxRead: snapshotPages * pageSize, arena: arena}
}

// pageList returns the pages the cache holds or tried, sorted, but
// those it read ahead that no read used.
func (c *pageCache) pageList() []uint64 {
	out := make([]uint64, 0, len(c.pages))
	for a, pg := range c.pages {
		if pg != nil && c.marks != nil && c.marks[a] == nil {
			continue // read ahead, never used
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// pageSegments returns the segments that read the pages at the given
// addresses with as few ranges as it can (adjacent pages in one segment),
// their buffers allocated from arena (so that the read itself allocates
// nothing).
func pageSegments(pages []uint64, arena *live.Arena) []memory.Segment {
	pages = slices.Compact(slices.Sorted(slices.Values(pages)))
	buf := arena.Bytes(len(pages) * pageSize)
	for i := 0; i < len(buf); i += pageSize {
		buf[i] = 1 // fault the buffer in now, not during the pause
	}
	var segs []memory.Segment
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j] == pages[j-1]+pageSize {
			j++
		}
		segs = append(segs, memory.Segment{Addr: pages[i], Buf: buf[i*pageSize : j*pageSize : j*pageSize]})
		i = j
	}
	return segs
}

// copyPages reads segs (pageSegments) in one vectored read; a segment
// that cannot be read whole is read again page by page, and those pages
// are returned.
func (c *pageCache) copyPages(segs []memory.Segment) (retry []memory.Segment) {
	memory.ReadV(c.r, segs)
	for _, s := range segs {
		if s.Err != nil && len(s.Buf) > pageSize {
			for off := 0; off < len(s.Buf); off += pageSize {
				retry = append(retry, memory.Segment{Addr: s.Addr + uint64(off), Buf: s.Buf[off : off+pageSize]})
			}
		}
	}
	if len(retry) > 0 {
		memory.ReadV(c.r, retry)
	}
	return retry
}

// keepAll stores the pages copyPages read.
func (c *pageCache) keepAll(segs, retry []memory.Segment) {
	for _, s := range segs {
		if s.Err == nil || len(s.Buf) == pageSize {
			c.keep(s)
		}
	}
	for _, s := range retry {
		c.keep(s)
	}
}

// keep stores the pages of a segment read by copyPages.
func (c *pageCache) keep(s memory.Segment) {
	c.lastOK = false // a page it held may be replaced
	for off := 0; off < len(s.Buf); off += pageSize {
		a := s.Addr + uint64(off)
		if s.Err != nil {
			c.pages[a] = nil
			continue
		}
		pg := (*[pageSize]byte)(s.Buf[off : off+pageSize])
		c.used = append(c.used, pg)
		c.pages[a] = pg
	}
}
