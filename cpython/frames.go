package cpython

import (
	"errors"
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// DefaultMaxDepth is the number of frames Frames reads when
// FrameOptions.MaxDepth is 0.
const DefaultMaxDepth = 4096

// ErrFrameCycle is returned when the chain of frames loops.
var ErrFrameCycle = errors.New("frame chain has a cycle")

// ErrFreedFrame is returned when a frame object on the chain has no
// reference: it was freed while the chain was read.
var ErrFreedFrame = errors.New("frame freed (no reference)")

// ErrTooDeep is returned when a stack has more frames than the bound.
var ErrTooDeep = errors.New("stack deeper than the limit")

// FrameOptions tunes Frames.
type FrameOptions struct {
	// Locals asks for the local variables of each frame (Frame.Locals).
	Locals bool
	// MaxDepth bounds the number of frames walked (DefaultMaxDepth if 0).
	MaxDepth int
}

// Frame is one Python frame of a thread's stack.
type Frame struct {
	// Function is the qualified name of the function (co_qualname on
	// 3.11+, co_name before): "Klass.method", "outer.<locals>.inner",
	// "<module>", "<lambda>", "<listcomp>".
	Function string
	// File is the code object's file name (co_filename), as the target
	// sees it.
	File string
	// Line is the line being executed, decoded from the line table; -1
	// when the instruction has no line.
	Line int
	// Locals maps local variable names to a short repr of their value
	// (see Repr), only with FrameOptions.Locals. Unbound locals are
	// absent. Cell and free variables are shown dereferenced.
	Locals map[string]string
	// LocalNames lists the names in Locals in the code object's order.
	LocalNames []string
	// Code is the address of the code object.
	Code uint64
	// Addr is the address of the frame: a PyFrameObject (≤3.10) or a
	// _PyInterpreterFrame (3.11+).
	Addr uint64
	// Entry says the frame is the first one its call of the evaluation
	// loop (_PyEval_EvalFrameDefault) ran: every frame up to 3.10; on
	// 3.11 the frames marked is_entry; from 3.12 those pushed on an
	// entry frame (a shim owned by the C stack). Native stacks are
	// merged with Python ones on these boundaries.
	Entry bool
	// Shim is, on an Entry frame from 3.12, the address of the entry frame
	// below it, which lives in the C stack frame of its evaluation loop
	// call: it tells which native frame runs this frame.
	Shim uint64
}

// Frame owners of _PyInterpreterFrame (Include/internal/pycore_frame.h).
const (
	ownedByCStack312     = 3 // 3.12, 3.13: FRAME_OWNED_BY_CSTACK
	ownedByInterpreter14 = 3 // 3.14: FRAME_OWNED_BY_INTERPRETER
	ownedByCStack14      = 4 // 3.14: FRAME_OWNED_BY_CSTACK
)

// Frames walks a thread's stack from its top frame top (tstate->frame
// on ≤3.10, the current _PyInterpreterFrame on 3.11+) to the outermost
// frame and returns the frames outermost first, as a traceback prints
// them (most recent call last). Frames that are C-stack shims (3.12+),
// owned by the interpreter (3.14) or that do not run a code object
// (3.13+) are left out. Line numbers come from the line tables, never
// from f_lineno.
//
// The walk is bounded by opt.MaxDepth and stops with ErrFrameCycle on a
// loop. When a frame cannot be read, Frames returns the frames read so
// far (the innermost ones, still outermost first) with the error.
func Frames(r memory.Reader, l *layout.Layout, top uint64, opt FrameOptions) ([]Frame, error) {
	d := newDecoder(r, l)
	frames, err := d.frames(top, opt)
	for i, j := 0, len(frames)-1; i < j; i, j = i+1, j-1 {
		frames[i], frames[j] = frames[j], frames[i]
	}
	return frames, err
}

// frames returns the frames innermost first.
func (d *decoder) frames(top uint64, opt FrameOptions) ([]Frame, error) {
	max := opt.MaxDepth
	if max <= 0 {
		max = DefaultMaxDepth
	}
	seen := map[uint64]bool{}
	var out []Frame
	for addr, n := top, 0; addr != 0; n++ {
		if n >= max {
			return out, fmt.Errorf("walking frames: more than %d: %w", max, ErrTooDeep)
		}
		if seen[addr] {
			return out, fmt.Errorf("walking frames at %#x: %w", addr, ErrFrameCycle)
		}
		seen[addr] = true
		d.shim = false
		f, next, ok, err := d.frame(addr, opt)
		if err != nil {
			return out, fmt.Errorf("reading frame %d at %#x: %w", len(out), addr, err)
		}
		if ok {
			out = append(out, f)
		} else if d.shim && len(out) > 0 {
			if f := &out[len(out)-1]; !f.Entry {
				f.Entry, f.Shim = true, addr
			}
		}
		addr = next
	}
	return out, nil
}

// frame decodes the frame at addr; ok is false for frames that are not
// shown. next is the caller's frame.
func (d *decoder) frame(addr uint64, opt FrameOptions) (f Frame, next uint64, ok bool, err error) {
	if d.l.Major < 3 || d.l.Minor <= 10 {
		return d.frameObject(addr, opt)
	}
	return d.interpFrame(addr, opt)
}

// frameHeader reads, in one read, the bytes of a frame up to the end of
// the last of the fields at offs (each 8 bytes wide at most), into the
// decoder's scratch buffer: valid until the next call. A reader's
// ErrNotRead is returned as is (see Sampler).
func (d *decoder) frameHeader(addr uint64, offs ...int) ([]byte, error) {
	end := 0
	for _, o := range offs {
		if o < 0 {
			return nil, fmt.Errorf("layout lacks a frame field")
		}
		end = max(end, o+8)
	}
	if cap(d.hdr) < end {
		d.hdr = make([]byte, end)
	}
	b := d.hdr[:end]
	n, err := d.r.ReadAt(b, addr)
	switch {
	case err == ErrNotRead:
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("reading %d bytes at %#x: %w", len(b), addr, err)
	case n != len(b):
		return nil, fmt.Errorf("reading %d bytes at %#x: %w", len(b), addr, memory.ErrShortRead)
	}
	return b, nil
}

// frameObject decodes a PyFrameObject (2.7, 3.6–3.10).
func (d *decoder) frameObject(addr uint64, opt FrameOptions) (f Frame, next uint64, ok bool, err error) {
	l := d.l
	offs := [4]int{l.FrameFBack, l.FrameFCode, l.FrameFLasti, l.FrameFBack}
	if l.ObjectObRefcnt >= 0 {
		offs[3] = l.ObjectObRefcnt
	}
	hdr, err := d.frameHeader(addr, offs[:]...)
	if err == ErrNotRead {
		return f, 0, false, err
	}
	if err != nil {
		return f, 0, false, fmt.Errorf("reading frame object: %w", err)
	}
	// A frame on a thread's chain is referenced by its callee or the
	// thread: one with no reference is a freed frame (in a free list),
	// reached by a read that raced with the thread (not paused).
	if l.ObjectObRefcnt >= 0 && int64(memory.Order.Uint64(hdr[l.ObjectObRefcnt:])) <= 0 {
		return f, 0, false, fmt.Errorf("frame object: %w", ErrFreedFrame)
	}
	next = memory.Order.Uint64(hdr[l.FrameFBack:])
	code := memory.Order.Uint64(hdr[l.FrameFCode:])
	lasti := int32(memory.Order.Uint32(hdr[l.FrameFLasti:]))
	if code == 0 {
		return f, 0, false, fmt.Errorf("reading f_code: %w", memory.ErrNull)
	}
	c, err := d.code(code)
	if err != nil {
		return f, 0, false, err
	}
	off := int(lasti)
	if l.Major == 3 && l.Minor == 10 && off >= 0 {
		off *= 2 // 3.10 counts code units
	}
	f = Frame{Function: c.QualName, File: c.File, Line: c.line(off), Code: code, Addr: addr, Entry: true}
	if opt.Locals {
		if err := d.frameLocals(&f, c, addr+uint64(l.FrameFLocalsplus)); err != nil {
			return f, 0, false, err
		}
	}
	return f, next, true, nil
}

// interpFrame decodes a _PyInterpreterFrame (3.11+).
func (d *decoder) interpFrame(addr uint64, opt FrameOptions) (f Frame, next uint64, ok bool, err error) {
	l := d.l
	codeOff, ipOff := l.InterpFrameFCode, l.InterpFramePrevInstr
	if l.Minor >= 13 {
		codeOff, ipOff = l.InterpFrameFExecutable, l.InterpFrameInstrPtr
	}
	hdr, err := d.frameHeader(addr, l.InterpFramePrevious, l.InterpFrameOwner, codeOff, ipOff)
	if err == ErrNotRead {
		return f, 0, false, err
	}
	if err != nil {
		return f, 0, false, fmt.Errorf("reading interpreter frame: %w", err)
	}
	next = memory.Order.Uint64(hdr[l.InterpFramePrevious:])
	owner := hdr[l.InterpFrameOwner]
	switch {
	case l.Minor >= 14 && (owner == ownedByInterpreter14 || owner == ownedByCStack14):
		// 3.14's evaluation loop marks its entry frame as owned by the
		// interpreter, the thread's base frame as owned by the C stack.
		d.shim = true
		return f, next, false, nil
	case l.Minor >= 12 && l.Minor <= 13 && owner == ownedByCStack312:
		d.shim = true
		return f, next, false, nil
	}
	code := memory.Order.Uint64(hdr[codeOff:])
	if l.Minor >= 14 {
		code &^= 7 // _PyStackRef tag bits
	}
	if code == 0 {
		if l.Minor >= 13 {
			return f, next, false, nil
		}
		return f, 0, false, fmt.Errorf("reading frame code: %w", memory.ErrNull)
	}
	c, known := d.cachedCode(code)
	if !known && l.Minor >= 13 {
		// f_executable may be None or a function for shim frames (a
		// code object already decoded is known to be one).
		r := d.r
		if d.codeR != nil {
			d.r = d.codeR
		}
		t, err := d.typeOf(code)
		d.r = r
		if err != nil {
			return f, 0, false, fmt.Errorf("reading f_executable: %w", err)
		}
		if !d.isCode(t) {
			return f, next, false, nil
		}
	}
	ip := memory.Order.Uint64(hdr[ipOff:])
	if !known {
		if c, err = d.code(code); err != nil {
			return f, 0, false, err
		}
	}
	// _PyInterpreterFrame_LASTI: code units from the start of the
	// bytecode; 3.11/3.12 point at the last instruction run (-1 before
	// the first), 3.13+ at the current one. CPython takes the line of
	// LASTI*2 in both cases.
	off := int((int64(ip) - int64(c.Bytecode)) / 2 * 2)
	if int64(ip) < int64(c.Bytecode) {
		off = -1
	}
	f = Frame{Function: c.QualName, File: c.File, Line: c.line(off), Code: code, Addr: addr}
	// 3.11: bool is_entry is the byte before char owner.
	f.Entry = l.Minor == 11 && l.InterpFrameOwner > 0 && hdr[l.InterpFrameOwner-1] != 0
	if opt.Locals {
		if err := d.frameLocals(&f, c, addr+uint64(l.InterpFrameLocalsplus)); err != nil {
			return f, 0, false, err
		}
	}
	return f, next, true, nil
}
