package unwind

import (
	"testing"

	"github.com/pyglass/pyglass/memory"
)

// FuzzCFI feeds hostile CIEs, FDEs and expressions to the parsers and
// the CFA interpreter: errors, never a panic, never an unbounded loop.
func FuzzCFI(f *testing.F) {
	f.Add(synthCIE, synthFDEA, uint16(0x50), []byte{0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22})
	f.Add([]byte{0, 0, 0, 0, 3, 'z', 'P', 'L', 'R', 'S', 0, 4, 0x7c, 30, 7, 0x9b, 0, 0, 0, 0, 0x1b, 0x1b}, []byte{0x0a, 0x0b, 0x0b, 0x2f, 1, 1}, uint16(9), []byte{0x28, 0xfd, 0xff})
	f.Add([]byte{0, 0, 0, 0, 4, 0, 8, 0, 1, 0x78, 16}, []byte{0x0f, 2, 0x77, 0, 0x16, 16, 2, 0x30, 0x06}, uint16(1), []byte{0x2f, 0xfd, 0xff})
	f.Fuzz(func(t *testing.T, cieBytes, fdeBody []byte, at uint16, expr []byte) {
		c, err := parseCIE(cieBytes, 0x1000)
		if err != nil {
			return
		}
		// An FDE with a small range around the address asked.
		fde := &fde{cie: c, start: 0x2000, end: 0x2000 + uint64(at) + 1, instr: fdeBody}
		if r, err := rowAt(fde, 0x2000+uint64(at)); err == nil {
			var regs Regs
			for i := 0; i < nregs; i++ {
				regs.set(i, uint64(i)*0x100)
			}
			read8 := func(a uint64) (uint64, error) {
				if a%3 == 0 {
					return 0, memory.ErrFault
				}
				return a * 7, nil
			}
			if r.cfaExpr != nil {
				eval(r.cfaExpr, &regs, read8, nil)
			}
			for _, ru := range r.regs {
				if ru.expr != nil {
					eval(ru.expr, &regs, read8, []uint64{0x5000})
				}
			}
			eval(expr, &regs, read8, nil)
		}
		if fd, err := parseFDE(fdeBody, 0x3000, c); err == nil && fd.end < fd.start {
			t.Fatalf("FDE range %#x-%#x", fd.start, fd.end)
		}
	})
}

// FuzzUnwind walks the synthetic module's stack with hostile bytes in
// place of its .eh_frame_hdr, .eh_frame and stack: the walk ends, with
// at most MaxFrames frames, and never panics.
func FuzzUnwind(f *testing.F) {
	mem, _ := synthModule(synthFDEA)
	img := make([]byte, synthEnd-synthHdr)
	mem.ReadAt(img, synthBase+synthHdr)
	f.Add(img[:0x100], make([]byte, 0x40), uint64(synthBase+0x1050), uint64(0x7010))
	f.Fuzz(func(t *testing.T, eh, stack []byte, pc, rbp uint64) {
		m, mod := synthModule(synthFDEA)
		mod.EhFrameHdr = synthBase + synthHdr
		// Overwrite the tables with the fuzzer's bytes.
		over := &memory.Fake{}
		img := make([]byte, synthEnd)
		m.ReadAt(img, synthBase)
		copy(img[synthHdr:], eh)
		over.Map(synthBase, img)
		over.Map(0x7000, append(stack, make([]byte, 0x100)...))
		var r Regs
		r.set(7, 0x7000)
		r.set(6, rbp)
		r.set(16, pc)
		frames, _ := New(over, AMD64, []Module{mod}).Unwind(r, 0)
		if len(frames) > MaxFrames {
			t.Fatalf("%d frames", len(frames))
		}
	})
}

// FuzzDebugFrame indexes hostile .debug_frame sections and walks the
// synthetic stack with them: the index is sorted and without overlaps,
// a lookup finds a range holding its address, the walk ends; never a
// panic.
func FuzzDebugFrame(f *testing.F) {
	f.Add(synthDebugFrame(1, false), uint64(synthBase), uint64(synthBase+0x1050))
	f.Add(synthDebugFrame(4, true), uint64(synthBase), uint64(synthBase+0x1180))
	f.Add(synthDebugFrame(3, false)[:40], uint64(0), uint64(0x1000))
	f.Fuzz(func(t *testing.T, sec []byte, bias, pc uint64) {
		df, _ := ParseDebugFrame(sec, bias)
		for i := 1; i < len(df.fdes); i++ {
			if df.fdes[i].start < df.fdes[i-1].end {
				t.Fatalf("FDEs %d and %d overlap", i-1, i)
			}
		}
		if fd := df.find(pc); fd != nil {
			if pc < fd.start || pc >= fd.end {
				t.Fatalf("find(%#x) = %#x-%#x", pc, fd.start, fd.end)
			}
			rowAt(fd, pc)
		}
		m, mod := synthModule(synthFDEA)
		mod.DebugFrame = func() *DebugFrame { return df }
		r := synthStack(m)
		r.set(16, pc)
		if frames, _ := New(m, AMD64, []Module{mod}).Unwind(r, 0); len(frames) > MaxFrames {
			t.Fatalf("%d frames", len(frames))
		}
	})
}
