package unwind

import (
	"encoding/binary"

	"github.com/pyglass/pyglass/memory"
)

// A synthetic amd64 module, in fake memory, for unit and fuzz tests:
// an ELF header at synthBase, its .eh_frame_hdr at synthBase+synthHdr and
// .eh_frame after it, with one CIE and two FDEs: funcA [0x1000,0x1100), a
// function with a frame pointer (push rbp; mov rbp, rsp), and funcB
// [0x1100,0x1200), which saves nothing.
const (
	synthBase = 0x400000
	synthHdr  = 0x800
	synthEnd  = 0x2000
)

var le = binary.LittleEndian

// synthCIE is the CIE's bytes after its length: id 0, version 1, "zR",
// code align 1, data align -8, return address column 16, augmentation
// data (FDE pointers pc-relative sdata4), then def_cfa rsp+8 and
// offset r16 at cfa-8.
var synthCIE = []byte{0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 16, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0}

// synthFDEA are funcA's instructions: after 1 byte (push rbp) the CFA is
// rsp+16 and rbp is at cfa-16; after 3 more (mov rbp, rsp) the CFA is
// rbp+16.
var synthFDEA = []byte{0x41, 0x0e, 16, 0x86, 2, 0x43, 0x0d, 6, 0}

// synthModule builds the module and returns its memory and Module.
func synthModule(fdeA []byte) (*memory.Fake, Module) {
	img := make([]byte, synthEnd)
	copy(img, "\x7fELF\x02\x01\x01")
	le.PutUint16(img[0x10:], 3)    // ET_DYN
	le.PutUint64(img[0x20:], 0x40) // e_phoff
	le.PutUint16(img[0x36:], 56)   // e_phentsize
	le.PutUint16(img[0x38:], 2)    // e_phnum
	ph := img[0x40:]
	le.PutUint32(ph, 1)             // PT_LOAD at offset 0, vaddr 0
	le.PutUint64(ph[32:], synthEnd) // p_filesz
	ph = img[0x40+56:]
	le.PutUint32(ph, 0x6474e550)    // PT_GNU_EH_FRAME
	le.PutUint64(ph[16:], synthHdr) // p_vaddr
	// .eh_frame: CIE, FDE A, FDE B, terminator.
	ehFrame := uint64(synthHdr + 0x40)
	var eh []byte
	rec := func(body []byte) uint64 {
		at := ehFrame + uint64(len(eh))
		eh = le.AppendUint32(eh, uint32(len(body)))
		eh = append(eh, body...)
		return at
	}
	cie := rec(synthCIE)
	fde := func(start, size uint64, instr []byte) uint64 {
		at := ehFrame + uint64(len(eh))
		var b []byte
		b = le.AppendUint32(b, uint32(at+4-cie))
		b = le.AppendUint32(b, uint32(start-(at+8))) // pc-relative
		b = le.AppendUint32(b, uint32(size))
		b = append(b, 0) // no augmentation data
		b = append(b, instr...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return rec(b)
	}
	a := fde(0x1000, 0x100, fdeA)
	b := fde(0x1100, 0x100, nil)
	eh = le.AppendUint32(eh, 0)
	copy(img[ehFrame:], eh)
	// .eh_frame_hdr: version 1, eh_frame_ptr pcrel sdata4, count udata4,
	// table datarel sdata4.
	hdr := []byte{1, 0x1b, 0x03, 0x3b}
	hdr = le.AppendUint32(hdr, uint32(ehFrame-(synthHdr+4)))
	hdr = le.AppendUint32(hdr, 2)
	for _, e := range [][2]uint64{{0x1000, a}, {0x1100, b}} {
		hdr = le.AppendUint32(hdr, uint32(e[0]-synthHdr))
		hdr = le.AppendUint32(hdr, uint32(e[1]-synthHdr))
	}
	copy(img[synthHdr:], hdr)
	f := &memory.Fake{}
	f.Map(synthBase, img)
	return f, Module{Start: synthBase + 0x1000, End: synthBase + synthEnd, Base: synthBase, Path: "synth"}
}

// synthStack maps a stack where funcA (at pc 0x1050, after its prologue)
// was called by funcB, called by code without CFI (0x3000) whose caller
// is found by its frame pointer (0x3100), the outermost.
func synthStack(f *memory.Fake) Regs {
	stack := make([]byte, 0x200)
	put := func(addr, v uint64) { le.PutUint64(stack[addr-0x7000:], v) }
	put(0x7010, 0x7100)           // A's saved rbp (B keeps it: rbp of the code below B)
	put(0x7018, synthBase+0x1180) // A's return address, in B
	put(0x7020, 0x3000)           // B's return address: no module
	put(0x7100, 0x7180)           // frame-pointer chain
	put(0x7108, 0x3100)
	put(0x7180, 0)
	put(0x7188, 0)
	f.Map(0x7000, stack)
	var r Regs
	r.set(7, 0x7000)            // rsp
	r.set(6, 0x7010)            // rbp
	r.set(16, synthBase+0x1050) // rip
	return r
}
