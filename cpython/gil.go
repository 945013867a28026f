package cpython

import (
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// GILHolder returns the address of the PyThreadState that holds the GIL
// of interp, or 0 when no thread holds it.
//
//   - 2.7, 3.6: the _PyThreadState_Current symbol (the current thread
//     state, NULL while the GIL is released).
//   - 3.7–3.11: _PyRuntime.gilstate.tstate_current, and
//     _PyRuntime.ceval.gil.locked must be set.
//   - 3.12+: interp->ceval.gil points to a struct _gil_runtime_state;
//     the holder is last_holder while locked is set.
//
// It fails when the symbol or runtime address it needs is unknown or the
// memory cannot be read.
func GILHolder(r memory.Reader, img Image, l *layout.Layout, interp uint64) (uint64, error) {
	g, err := FindGIL(r, img, l, interp)
	if err != nil {
		return 0, err
	}
	var buf [12]byte
	segs := g.Segments(nil, &buf)
	memory.ReadV(r, segs)
	return g.Decode(segs)
}

// GILWords says where a GIL's holder is read: the thread state pointer at
// Holder, which holds the GIL while the int32 at Locked is set (Locked 0:
// the pointer alone says it, NULL while the GIL is released). The
// addresses hold while the interpreter lives: a sampler finds them once
// (FindGIL) and reads both words in one vectored read each sample
// (Segments, then Decode).
type GILWords struct {
	Holder, Locked uint64
}

// FindGIL returns where interp's GIL holder is read (see GILHolder).
func FindGIL(r memory.Reader, img Image, l *layout.Layout, interp uint64) (GILWords, error) {
	g, _, err := locateGIL(r, &img, l, interp)
	return g, err
}

// GILRange returns the memory of interp's GIL, [start, end): where a
// thread waiting for the GIL sleeps (a futex in it: a condition
// variable or mutex of struct _gil_runtime_state, 3.6's static
// gil_cond/gil_mutex, 2.7's semaphore). Zeros when it cannot be found.
func GILRange(r memory.Reader, img Image, l *layout.Layout, interp uint64) [2]uint64 {
	_, rng, _ := locateGIL(r, &img, l, interp)
	return rng
}

// locateGIL is the one place that knows where each version keeps its
// GIL: the words its holder is read from (an error when they cannot be
// found) and the memory a waiter sleeps on (zeros when unknown).
func locateGIL(r memory.Reader, img *Image, l *layout.Layout, interp uint64) (GILWords, [2]uint64, error) {
	switch {
	case l.InterpCevalGil >= 0: // 3.12+: interp->ceval.gil points to the struct
		gil, err := memory.NonNullPtr(r, interp+uint64(l.InterpCevalGil))
		if err != nil {
			return GILWords{}, [2]uint64{}, fmt.Errorf("reading interp->ceval.gil: %w", err)
		}
		return GILWords{Holder: gil + uint64(l.GilLastHolder), Locked: gil + uint64(l.GilLocked)}, [2]uint64{gil, gil + 256}, nil
	case l.RuntimeGilstateTstateCurrent >= 0: // 3.7-3.11: in _PyRuntime
		rt, ok := img.RuntimeAddr()
		if !ok {
			return GILWords{}, [2]uint64{}, fmt.Errorf("finding the GIL holder: %w", errNoRuntime)
		}
		g := GILWords{Holder: rt + uint64(l.RuntimeGilstateTstateCurrent)}
		var rng [2]uint64
		if l.RuntimeCevalGilLocked >= 0 {
			g.Locked = rt + uint64(l.RuntimeCevalGilLocked)
			if l.GilLocked >= 0 {
				base := g.Locked - uint64(l.GilLocked)
				rng = [2]uint64{base, base + 256}
			}
		}
		return g, rng, nil
	default: // 2.7, 3.6: static symbols
		var rng [2]uint64
		if a, ok := img.symbol("gil_cond"); ok { // 3.6 (static, .symtab)
			lo := a
			if b, ok := img.symbol("gil_mutex"); ok && b < lo {
				lo = b
			}
			rng = [2]uint64{lo, lo + 160}
		} else if a, ok := img.symbol("interpreter_lock"); ok { // 2.7: a sem_t*
			if lock, err := memory.NonNullPtr(r, a); err == nil {
				rng = [2]uint64{lock, lock + 64}
			}
		}
		a, ok := img.symbol("_PyThreadState_Current")
		if !ok {
			return GILWords{}, rng, fmt.Errorf("finding the GIL holder: no _PyThreadState_Current symbol")
		}
		return GILWords{Holder: a}, rng, nil
	}
}

// Segments appends to dst the reads of g's words into buf, for one
// vectored read (memory.ReadV) whose result Decode reads.
func (g GILWords) Segments(dst []memory.Segment, buf *[12]byte) []memory.Segment {
	dst = append(dst, memory.Segment{Addr: g.Holder, Buf: buf[:8]})
	if g.Locked != 0 {
		dst = append(dst, memory.Segment{Addr: g.Locked, Buf: buf[8:12]})
	}
	return dst
}

// Decode returns the GIL holder from segs, as Segments made and read them
// (0 when the GIL is released).
func (g GILWords) Decode(segs []memory.Segment) (uint64, error) {
	if len(segs) == 0 {
		return 0, fmt.Errorf("reading the GIL holder: nothing read")
	}
	if segs[0].Err != nil {
		return 0, fmt.Errorf("reading the GIL holder: %w", segs[0].Err)
	}
	h := memory.Order.Uint64(segs[0].Buf)
	if g.Locked != 0 && len(segs) > 1 {
		if segs[1].Err != nil {
			return 0, fmt.Errorf("reading gil.locked: %w", segs[1].Err)
		}
		if int32(memory.Order.Uint32(segs[1].Buf)) == 0 {
			return 0, nil
		}
	}
	return h, nil
}
