package cpython

import (
	"errors"
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// ErrTorn is returned by Sampler.Stack when a thread's stack changed while
// it was being read (the thread ran on): the sample must be read again or
// counted as lost, never recorded.
var ErrTorn = errors.New("stack changed while it was read")

// ErrNotRead is what a Sampler's reader may return for memory it has not
// read yet but will (a cache that gathers the pages several threads need
// into one system call): Stack returns it as is, without wrapping it, so
// that asking costs no allocation; the caller reads the memory and calls
// Stack again.
var ErrNotRead = errors.New("memory not read yet")

// SampleFrame is one frame of a sampled stack: the code object, its
// function and file (as Sampler.Code gives them), and the line being run.
type SampleFrame struct {
	Code     uint64
	Function string
	File     string
	Line     int
}

// CodeRef names a code object: what a profile shows for a frame.
type CodeRef struct {
	Function string
	File     string
	// FirstLine is co_firstlineno.
	FirstLine int
}

// Sampler reads the stacks of a running interpreter again and again, as a
// sampling profiler does: code objects (names, files, line tables) are
// decoded once and kept, so a stack costs the reads of its frames only.
// It never writes to the target and needs no pause: a stack that changed
// while it was read is detected (ErrTorn).
//
// Code objects are immutable, but an address can be freed and reused by
// another code object: a caller that samples for long calls Revalidate
// (or Forget, which drops every cached object) regularly (pyglass
// revalidates every second).
// A Sampler is not safe for concurrent use.
type Sampler struct {
	d *decoder
}

// NewSampler returns a Sampler over r with layout l.
func NewSampler(r memory.Reader, l *layout.Layout) *Sampler {
	d := newDecoder(r, l)
	d.front = new([codeFrontSize]codeSlot)
	return &Sampler{d: d}
}

// SetReader makes later reads go through r (e.g. a fresh page cache for
// each sample); the decoded code objects are kept.
func (s *Sampler) SetReader(r memory.Reader) { s.d.r = r }

// SetCodeReader makes the code objects a Stack meets for the first time
// (and their names, line tables and types) be read through r rather than
// the reader of the frames: a sampler that notes what the frames need,
// to read it ahead at the next sample, notes only that. Nil: the frames'
// reader.
func (s *Sampler) SetCodeReader(r memory.Reader) { s.d.codeR = r }

// Forget drops the decoded code and type objects.
func (s *Sampler) Forget() {
	clear(s.d.codes)
	clear(s.d.types)
	clear(s.d.front[:])
}

// Revalidate keeps the decoded code objects that still read the same
// through r (in one vectored read, when r has ReadV) and drops the others,
// and every type object: a code object is immutable, so one whose type,
// size, name, qualified name, file name, line table and first line are
// the same objects and values as when it was decoded is taken as the
// same code object (an address freed and reused by a code object of the
// same function and the same line table object would not be told
// apart). It replaces Forget for a sampler that runs for long: the code
// objects of its stacks are not decoded again every second.
func (s *Sampler) Revalidate(r memory.Reader) {
	d := s.d
	clear(d.types)
	clear(d.front[:])
	if len(d.codes) == 0 {
		return
	}
	addrs := make([]uint64, 0, len(d.codes))
	segs := make([]memory.Segment, 0, len(d.codes))
	for addr, c := range d.codes {
		addrs = append(addrs, addr)
		segs = append(segs, memory.Segment{Addr: addr, Buf: make([]byte, len(c.hdr))})
	}
	memory.ReadV(r, segs)
	for i, seg := range segs {
		if seg.Err != nil || !d.sameCode(d.codes[addrs[i]].hdr, seg.Buf) {
			delete(d.codes, addrs[i])
		}
	}
}

// sameCode reports whether two reads of a PyCodeObject's header hold the
// same identity fields (see Revalidate).
func (d *decoder) sameCode(a, b []byte) bool {
	l := d.l
	tableOff := l.CodeCoLinetable
	if l.CodeCoLnotab >= 0 {
		tableOff = l.CodeCoLnotab
	}
	fa, fb := &fields{b: a, what: "PyCodeObject"}, &fields{b: b, what: "PyCodeObject"}
	for _, off := range [...]int{l.ObjectObType, l.VarObjectObSize, l.CodeCoName, l.CodeCoQualname, l.CodeCoFilename, tableOff} {
		if off >= 0 && fa.u64(off) != fb.u64(off) {
			return false
		}
	}
	return fa.i32(l.CodeCoFirstlineno) == fb.i32(l.CodeCoFirstlineno) && fa.err == nil && fb.err == nil
}

// TopFrame returns the address of the current frame of the thread state at
// tstate (0 when the thread runs no Python code) and whether the thread
// is inside the evaluation loop (3.11, 3.12; see Thread.InEval): a frame
// of 0 then means it was caught entering it.
func (s *Sampler) TopFrame(tstate uint64) (frame uint64, inEval bool, err error) {
	return topFrame(s.d.r, s.d.l, tstate)
}

// InEval reports whether cframe, read at the first hop of TopPath from
// the thread state at tstate (3.11, 3.12), says the thread is inside the
// evaluation loop (see Thread.InEval). Always false on other versions.
func (s *Sampler) InEval(tstate, cframe uint64) bool {
	return cframeInEval(s.d.l, tstate, cframe)
}

// TopPath returns how to find a thread's current frame from its thread
// state with pointer reads alone: read the pointer at tstate+path[0], then
// at that value+path[1], and so on (a zero pointer on the way means no
// frame). TopFrame does the same with separate reads; a sampler uses the
// path to read every thread's at once.
func (s *Sampler) TopPath() []int {
	l := s.d.l
	switch {
	case l.TstateCurrentFrame >= 0:
		return []int{l.TstateCurrentFrame}
	case l.CFrameCurrentFrame >= 0:
		return []int{l.TstateCframe, l.CFrameCurrentFrame}
	default:
		return []int{l.TstateFrame}
	}
}

// Code returns the names of the code object at addr, which a Stack of this
// Sampler returned (it is cached).
func (s *Sampler) Code(addr uint64) (CodeRef, error) {
	c, err := s.d.code(addr)
	if err != nil {
		return CodeRef{}, err
	}
	return CodeRef{Function: c.QualName, File: c.File, FirstLine: c.FirstLine}, nil
}

// Stack reads the thread's stack from its top frame top, innermost frame
// first, appending to dst[:0]. At most maxDepth frames are read (a deeper
// stack keeps its innermost frames and returns ErrTooDeep); a chain that
// loops or a frame that cannot be decoded means the thread moved under the
// read and returns ErrTorn with the frames read so far.
func (s *Sampler) Stack(top uint64, maxDepth int, dst []SampleFrame) ([]SampleFrame, error) {
	dst = dst[:0]
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	prev := uint64(0)
	for addr, n := top, 0; addr != 0; n++ {
		if n >= maxDepth {
			return dst, fmt.Errorf("more than %d frames: %w", maxDepth, ErrTooDeep)
		}
		// Frames of one thread do not repeat; a chain that comes back
		// to the previous frame is being rewritten.
		if addr == prev {
			return dst, ErrTorn
		}
		f, next, ok, err := s.d.frame(addr, FrameOptions{})
		if err == ErrNotRead {
			return dst, err
		}
		if err != nil {
			return dst, fmt.Errorf("%w: %w", ErrTorn, err)
		}
		if ok {
			dst = append(dst, SampleFrame{Code: f.Code, Function: f.Function, File: f.File, Line: f.Line})
		}
		prev, addr = addr, next
	}
	return dst, nil
}
