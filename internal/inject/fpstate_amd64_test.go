package inject

import "github.com/pyglass/pyglass/internal/ptrace"

// The XSAVE image (NT_X86_XSTATE, standard format): the legacy area holds
// MXCSR at 24 and xmm0-15 at 160; the header is at 512; the upper halves
// of ymm0-15 (component 2) at 576, and with AVX-512 the opmask registers
// (5), the upper halves of zmm0-15 (6) and zmm16-31 (7) after them.

func markVectorRegs(fp []byte) {
	for i := 160; i < 416 && i < len(fp); i++ {
		fp[i] = byte(i*7 + 1)
	}
	for i := 576; i < len(fp) && i < 2688; i++ {
		fp[i] = byte(i*13 + 5)
	}
}

// vectorRanges are the byte ranges compared: all but the header (whose
// XSTATE_BV may record a component as back in its init state).
func vectorRanges(n int) [][2]int {
	if n <= 576 {
		return [][2]int{{0, min(n, 464)}}
	}
	return [][2]int{{0, 464}, {576, n}}
}

// markFlags sets (or clears) the direction flag, which C code may only
// find clear: the chain clears it for its calls, and the thread's own
// value must come back.
func markFlags(r *ptrace.Regs, on bool) {
	if on {
		r.Eflags |= flagDF
	} else {
		r.Eflags &^= flagDF
	}
}

func flagsMarked(r *ptrace.Regs) bool { return r.Eflags&flagDF != 0 }
