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
	var buf GILBuf
	segs := g.Segments(nil, &buf)
	memory.ReadV(r, segs)
	return g.Decode(segs)
}

// GILWords says where a GIL's holder is read: the thread state pointer at
// Holder, which holds the GIL while the int32 at Locked is set (Locked 0:
// the pointer alone says it, NULL while the GIL is released). The
// addresses hold while the interpreter lives: a sampler finds them once
// (FindGIL) and reads the words in one vectored read each sample
// (Segments, then Read).
//
// From 3.6 the GIL (struct _gil_runtime_state; 3.6: static variables)
// also counts its switches: take_gil sets last_holder and bumps
// switch_number whenever the thread taking it is not the last holder.
// LastHolder and Switch are where those are read (0: unknown, 2.7's GIL
// has neither). Between two reads with the same count no thread but the
// last holder took the GIL, so no other thread ran Python code: the
// stacks of the others are as they were (GIL builds only).
type GILWords struct {
	Holder, Locked     uint64
	LastHolder, Switch uint64
}

// GILState is one read of a GIL's words.
type GILState struct {
	// Holder is the thread state holding the GIL, 0 when it is released.
	Holder uint64
	// LastHolder and Switch are the GIL's last holder and switch count,
	// when HasSwitch (see GILWords).
	LastHolder, Switch uint64
	HasSwitch          bool
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
		g := GILWords{Holder: gil + uint64(l.GilLastHolder), Locked: gil + uint64(l.GilLocked)}
		if l.GilLastHolder == 8 && l.GilLocked == 16 { // switch_number follows locked
			g.LastHolder, g.Switch = g.Holder, gil+24
		}
		return g, [2]uint64{gil, gil + 256}, nil
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
				if l.GilLocked == 16 && l.RuntimeCevalGilLastHolder == l.RuntimeCevalGilLocked-8 {
					g.LastHolder, g.Switch = base+8, base+24
				}
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
		g := GILWords{Holder: a}
		last, okl := img.symbol("gil_last_holder") // 3.6 (static, .symtab)
		sw, oks := img.symbol("gil_switch_number")
		if okl && oks {
			g.LastHolder, g.Switch = last, sw
		}
		return g, rng, nil
	}
}

// gilBufSize is the size of the buffer Segments reads into.
const gilBufSize = 64

// GILBuf is the buffer a GIL's words are read into.
type GILBuf [gilBufSize]byte

// words are g's words, with their sizes, by address.
func (g GILWords) words() (ws [4][2]uint64, n int) {
	add := func(a, size uint64) {
		if a == 0 {
			return
		}
		for i := 0; i < n; i++ {
			if ws[i][0] == a {
				return
			}
		}
		ws[n] = [2]uint64{a, size}
		n++
	}
	add(g.Holder, 8)
	add(g.Locked, 4)
	add(g.LastHolder, 8)
	add(g.Switch, 8)
	for i := 1; i < n; i++ { // (insertion sort: four at most)
		for j := i; j > 0 && ws[j][0] < ws[j-1][0]; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
	return ws, n
}

// Segments appends to dst the reads of g's words into buf, for one
// vectored read (memory.ReadV) whose result Read decodes. Words close to
// each other are read as one segment: the kernel's cost is per segment.
func (g GILWords) Segments(dst []memory.Segment, buf *GILBuf) []memory.Segment {
	ws, n := g.words()
	used := 0
	for i := 0; i < n; {
		lo, hi := ws[i][0], ws[i][0]+ws[i][1]
		j := i + 1
		for ; j < n && ws[j][0] >= hi && ws[j][0]-hi <= 16 && ws[j][0]+ws[j][1]-lo <= 32; j++ {
			hi = ws[j][0] + ws[j][1]
		}
		size := int(hi - lo)
		if used+size > len(buf) {
			break
		}
		dst = append(dst, memory.Segment{Addr: lo, Buf: buf[used : used+size]})
		used += size
		i = j
	}
	return dst
}

// word finds the n bytes at a in segs, as Segments made and read them.
func word(segs []memory.Segment, a uint64, n int) ([]byte, error) {
	for _, s := range segs {
		if a >= s.Addr && a-s.Addr+uint64(n) <= uint64(len(s.Buf)) {
			if s.Err != nil {
				return nil, s.Err
			}
			off := a - s.Addr
			return s.Buf[off : off+uint64(n)], nil
		}
	}
	return nil, fmt.Errorf("word at %#x: %w", a, memory.ErrShortRead)
}

// Read decodes segs, as Segments made and read them.
func (g GILWords) Read(segs []memory.Segment) (GILState, error) {
	var st GILState
	h, err := word(segs, g.Holder, 8)
	if err != nil {
		return st, fmt.Errorf("reading the GIL holder: %w", err)
	}
	st.Holder = memory.Order.Uint64(h)
	if g.Locked != 0 {
		l, err := word(segs, g.Locked, 4)
		if err != nil {
			return st, fmt.Errorf("reading gil.locked: %w", err)
		}
		if int32(memory.Order.Uint32(l)) == 0 {
			st.Holder = 0
		}
	}
	if g.Switch != 0 {
		last, err1 := word(segs, g.LastHolder, 8)
		sw, err2 := word(segs, g.Switch, 8)
		if err1 == nil && err2 == nil {
			st.LastHolder, st.Switch, st.HasSwitch = memory.Order.Uint64(last), memory.Order.Uint64(sw), true
		}
	}
	return st, nil
}

// Decode returns the GIL holder from segs, as Segments made and read them
// (0 when the GIL is released).
func (g GILWords) Decode(segs []memory.Segment) (uint64, error) {
	st, err := g.Read(segs)
	return st.Holder, err
}
