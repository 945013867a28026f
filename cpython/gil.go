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
	switch {
	case l.InterpCevalGil >= 0:
		gil, err := memory.NonNullPtr(r, interp+uint64(l.InterpCevalGil))
		if err != nil {
			return GILWords{}, fmt.Errorf("reading interp->ceval.gil: %w", err)
		}
		return GILWords{Holder: gil + uint64(l.GilLastHolder), Locked: gil + uint64(l.GilLocked)}, nil
	case l.RuntimeGilstateTstateCurrent >= 0:
		rt, ok := img.RuntimeAddr()
		if !ok {
			return GILWords{}, fmt.Errorf("finding the GIL holder: %w", errNoRuntime)
		}
		g := GILWords{Holder: rt + uint64(l.RuntimeGilstateTstateCurrent)}
		if l.RuntimeCevalGilLocked >= 0 {
			g.Locked = rt + uint64(l.RuntimeCevalGilLocked)
		}
		return g, nil
	default:
		a, ok := img.symbol("_PyThreadState_Current")
		if !ok {
			return GILWords{}, fmt.Errorf("finding the GIL holder: no _PyThreadState_Current symbol")
		}
		return GILWords{Holder: a}, nil
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
