package memory

import "fmt"

// Segment is one range of a vectored read: Buf is filled with the bytes at
// Addr; Err says why it could not be, whole.
type Segment struct {
	Addr uint64
	Buf  []byte
	Err  error
}

// VectorReader is a Reader that can read many ranges in one operation (one
// system call for a live process), as a sampler reading every thread at
// once wants.
type VectorReader interface {
	Reader
	// ReadV fills every segment it can and sets Err on the others.
	ReadV(segs []Segment)
}

// ReadV reads every segment through r's ReadV when r has one, else one by
// one. Each segment's Err is nil when its Buf was filled whole.
func ReadV(r Reader, segs []Segment) {
	if vr, ok := r.(VectorReader); ok {
		vr.ReadV(segs)
		return
	}
	ReadEach(r, segs)
}

// ReadEach reads the segments one by one.
func ReadEach(r Reader, segs []Segment) {
	for i := range segs {
		s := &segs[i]
		n, err := r.ReadAt(s.Buf, s.Addr)
		switch {
		case err != nil:
			s.Err = err
		case n != len(s.Buf):
			s.Err = fmt.Errorf("reading %d bytes at %#x: %w", len(s.Buf), s.Addr, ErrShortRead)
		default:
			s.Err = nil
		}
	}
}

// Prefetcher is a Reader that can bring in many scattered ranges at once
// before they are read (a page cache: one vectored read for the pages it
// lacks), as a decoder about to look at every key of a dict wants.
// Prefetch is a hint: the reads that follow return the same with or
// without it, and a range it cannot read is left for them to report.
type Prefetcher interface {
	Reader
	// Prefetch brings in the n bytes at each of addrs.
	Prefetch(addrs []uint64, n int)
}

// Prefetch passes the hint to r when it takes one.
func Prefetch(r Reader, addrs []uint64, n int) {
	if p, ok := r.(Prefetcher); ok {
		p.Prefetch(addrs, n)
	}
}
