package unwind

import (
	"errors"
	"fmt"
	"sort"

	"github.com/pyglass/pyglass/memory"
)

// Module is one executable mapping of an ELF file (the program, a
// library, the vDSO).
type Module struct {
	Start, End uint64 // the executable mapping
	// Base is where the file's offset 0 is mapped (its ELF header).
	Base uint64
	// EhFrameHdr is the address of its .eh_frame_hdr, 0 when it has none.
	EhFrameHdr uint64
	Path       string
	// DebugFrame, when set, returns the object's .debug_frame, read for
	// the code addresses .eh_frame does not cover (once per Unwinder;
	// nil when it has none).
	DebugFrame func() *DebugFrame
}

// Frame is one native frame, innermost first in Unwind's result.
type Frame struct {
	// PC is the address of the instruction running (frame 0) or the
	// return address (the others: the call is just before it).
	PC uint64
	// SP is the stack pointer in the frame: its locals are between SP and
	// its caller's SP.
	SP uint64
	// Module is the index of the module holding PC, -1 when none does.
	Module int
	// FP says the frame was found by following frame pointers (its
	// caller had no call-frame information).
	FP bool
	// Signal says PC is where a signal interrupted the code (the frame
	// above is the kernel's signal trampoline): PC itself, not PC-1, is
	// the instruction.
	Signal bool
}

// LookupPC is the address to symbolize for f: the call instruction for
// a return address.
func (f Frame) LookupPC(i int) uint64 {
	if i > 0 && !f.Signal && f.PC > 0 {
		return f.PC - 1
	}
	return f.PC
}

// Bounds of one walk.
const (
	MaxFrames  = 512
	maxFDEs    = 1 << 24 // entries of one .eh_frame_hdr table
	maxCached  = 4096
	maxPhnum   = 256
	addressTop = 1 << 56 // user-space addresses are below (both arches)
)

// Unwinder walks stacks of one address space.
type Unwinder struct {
	r     memory.Reader
	arch  Arch
	mods  []Module // sorted by Start
	fdes  map[uint64]*fde
	cies  map[uint64]*cie
	hdrs  map[int]*hdrInfo
	dfs   map[int]*DebugFrame
	Reads int // memory reads made (for the cost report)
}

// New returns an unwinder over r with the modules mods.
func New(r memory.Reader, arch Arch, mods []Module) *Unwinder {
	ms := append([]Module(nil), mods...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Start < ms[j].Start })
	return &Unwinder{r: r, arch: arch, mods: ms, fdes: map[uint64]*fde{}, cies: map[uint64]*cie{}, hdrs: map[int]*hdrInfo{}, dfs: map[int]*DebugFrame{}}
}

// Modules returns the modules, sorted by address (Frame.Module indexes it).
func (u *Unwinder) Modules() []Module { return u.mods }

func (u *Unwinder) module(pc uint64) int {
	i := sort.Search(len(u.mods), func(i int) bool { return u.mods[i].End > pc })
	if i < len(u.mods) && u.mods[i].Start <= pc {
		return i
	}
	return -1
}

func (u *Unwinder) read(p []byte, addr uint64) error {
	u.Reads++
	return memory.Read(u.r, addr, p)
}

func (u *Unwinder) read8(addr uint64) (uint64, error) {
	var b [8]byte
	if err := u.read(b[:], addr); err != nil {
		return 0, err
	}
	return memory.Order.Uint64(b[:]), nil
}

// ErrNoCFI says a code address has no call-frame information.
var ErrNoCFI = errors.New("no call-frame information")

// Unwind walks the stack of a thread whose registers are regs, innermost
// frame first, at most max frames (MaxFrames when 0). The error says why
// the walk stopped before the outermost frame (the frames read so far
// are returned with it); a walk that reached the end of the stack (a
// return address the CFI declares undefined, or zero) returns nil.
func (u *Unwinder) Unwind(regs Regs, max int) ([]Frame, error) {
	if max <= 0 || max > MaxFrames {
		max = MaxFrames
	}
	a := u.arch
	pc, ok := regs.get(a.pc())
	if !ok {
		return nil, errors.New("no instruction pointer")
	}
	frames := []Frame{{PC: pc, SP: regs.SP(a), Module: u.module(pc)}}
	for len(frames) < max {
		i := len(frames) - 1
		next, signal, fp, done, err := u.step(&regs, frames[i], i)
		if err != nil || done {
			return frames, err
		}
		npc, _ := next.get(a.pc())
		if a == ARM64 {
			npc &= 1<<48 - 1 // a signed return address: strip the code
		}
		if npc == 0 {
			return frames, nil
		}
		// The stack grows down: a caller's frame is above its callee's,
		// except across a signal (an alternate signal stack).
		if osp, nsp := regs.SP(a), next.SP(a); !signal && !frames[i].Signal && nsp <= osp {
			return frames, fmt.Errorf("stack pointer did not move up at frame %d (%#x to %#x)", i, osp, nsp)
		}
		next.set(a.pc(), npc)
		regs = next
		frames = append(frames, Frame{PC: npc, SP: next.SP(a), Module: u.module(npc), FP: fp, Signal: signal})
	}
	return frames, fmt.Errorf("stopped after %d frames", max)
}

// step computes the caller's registers of frame f (index i).
func (u *Unwinder) step(regs *Regs, f Frame, i int) (next Regs, signal, fp, done bool, err error) {
	a := u.arch
	fd, err := u.findFDE(f.LookupPC(i), f.Module)
	if err != nil {
		if errors.Is(err, ErrNoCFI) {
			next, err = u.stepFP(regs)
			return next, false, true, false, err
		}
		return next, false, false, false, err
	}
	r, err := rowAt(fd, f.LookupPC(i))
	if err != nil {
		return next, false, false, false, err
	}
	var cfa uint64
	if r.cfaExpr != nil {
		if cfa, err = eval(r.cfaExpr, regs, u.read8, nil); err != nil {
			return next, false, false, false, fmt.Errorf("CFA: %w", err)
		}
	} else {
		v, ok := regs.get(r.cfaReg)
		if !ok {
			return next, false, false, false, fmt.Errorf("CFA register %d unknown", r.cfaReg)
		}
		cfa = v + uint64(r.cfaOff)
	}
	ra := fd.cie.ra
	if ra < 0 || ra >= nregs {
		return next, false, false, false, fmt.Errorf("return address register %d", ra)
	}
	if r.regs[ra].kind == ruleUndef {
		return next, false, false, true, nil // the outermost frame
	}
	next = Regs{}
	for reg := 0; reg < nregs; reg++ {
		if reg == a.pc() && a == AMD64 {
			continue // the return address column: set below
		}
		ru := r.regs[reg]
		var v uint64
		switch ru.kind {
		case ruleSame:
			var ok bool
			if v, ok = regs.get(reg); !ok {
				continue
			}
		case ruleUndef:
			continue
		case ruleOffset:
			if v, err = u.read8(cfa + uint64(ru.off)); err != nil {
				if reg == ra {
					return next, false, false, false, fmt.Errorf("reading the return address: %w", err)
				}
				continue
			}
		case ruleValOffset:
			v = cfa + uint64(ru.off)
		case ruleReg:
			var ok bool
			if v, ok = regs.get(ru.reg); !ok {
				continue
			}
		case ruleExpr, ruleValExpr:
			if v, err = eval(ru.expr, regs, u.read8, []uint64{cfa}); err != nil {
				if reg == ra {
					return next, false, false, false, fmt.Errorf("return address: %w", err)
				}
				continue
			}
			if ru.kind == ruleExpr {
				if v, err = u.read8(v); err != nil {
					if reg == ra {
						return next, false, false, false, fmt.Errorf("reading the return address: %w", err)
					}
					continue
				}
			}
		}
		next.set(reg, v)
	}
	// The stack pointer is the CFA unless a rule says otherwise (a
	// signal frame restores the interrupted one).
	if r.regs[a.sp()].kind == ruleSame {
		next.set(a.sp(), cfa)
	}
	rav, ok := next.get(ra)
	if a == AMD64 {
		rav, ok = u.raAMD64(r, regs, cfa)
	}
	if !ok {
		return next, false, false, false, errors.New("return address unknown")
	}
	next.set(a.pc(), rav)
	return next, fd.cie.signal, false, false, nil
}

// raAMD64 computes the return address column (16) of an amd64 row.
func (u *Unwinder) raAMD64(r row, regs *Regs, cfa uint64) (uint64, bool) {
	ru := r.regs[16]
	switch ru.kind {
	case ruleOffset:
		v, err := u.read8(cfa + uint64(ru.off))
		return v, err == nil
	case ruleExpr, ruleValExpr:
		v, err := eval(ru.expr, regs, u.read8, []uint64{cfa})
		if err != nil {
			return 0, false
		}
		if ru.kind == ruleExpr {
			v, err = u.read8(v)
		}
		return v, err == nil
	case ruleValOffset:
		return cfa + uint64(ru.off), true
	case ruleReg:
		return regs.get(ru.reg)
	}
	return 0, false
}

// stepFP follows the frame-pointer chain one frame: the frame pointer
// points at the saved caller's frame pointer, the return address just
// above it.
func (u *Unwinder) stepFP(regs *Regs) (Regs, error) {
	a := u.arch
	fp, ok := regs.get(a.fp())
	sp := regs.SP(a)
	if !ok || fp == 0 || fp < sp || fp >= addressTop || fp%8 != 0 {
		return Regs{}, fmt.Errorf("%w and no frame pointer at %#x", ErrNoCFI, regs.PC(a))
	}
	var b [16]byte
	if err := u.read(b[:], fp); err != nil {
		return Regs{}, fmt.Errorf("frame pointer %#x: %w", fp, err)
	}
	// Callee-saved registers are unknown past a frame without CFI, but
	// for the frame pointer itself.
	var next Regs
	next.set(a.fp(), memory.Order.Uint64(b[:8]))
	next.set(a.pc(), memory.Order.Uint64(b[8:]))
	next.set(a.sp(), fp+16)
	return next, nil
}
