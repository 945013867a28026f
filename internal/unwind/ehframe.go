package unwind

import (
	"errors"
	"fmt"

	"github.com/pyglass/pyglass/memory"
)

// hdrInfo is a parsed .eh_frame_hdr: its binary search table.
type hdrInfo struct {
	addr    uint64 // of the header (the base of datarel values)
	table   uint64 // address of the first entry
	count   uint64
	enc     uint8 // of the table's values
	entrySz uint64
	err     error
}

func (u *Unwinder) hdr(mod int) *hdrInfo {
	if h, ok := u.hdrs[mod]; ok {
		return h
	}
	h := &hdrInfo{addr: u.mods[mod].EhFrameHdr}
	u.hdrs[mod] = h
	if h.addr == 0 {
		h.err = ErrNoCFI
		return h
	}
	var b [32]byte
	if err := u.read(b[:12], h.addr); err != nil {
		h.err = fmt.Errorf(".eh_frame_hdr: %w", err)
		return h
	}
	d := &buf{b: b[:12], base: h.addr}
	version, ptrEnc, countEnc, tableEnc := d.u8(), d.u8(), d.u8(), d.u8()
	if version != 1 || tableEnc == peOmit || countEnc == peOmit || encSize(tableEnc) == 0 || encSize(ptrEnc) == 0 && ptrEnc != peOmit {
		h.err = fmt.Errorf("%w: .eh_frame_hdr version %d, table encoding %#x", ErrNoCFI, version, tableEnc)
		return h
	}
	// The encoded .eh_frame pointer, then the count.
	n := encSize(ptrEnc)
	if ptrEnc == peOmit {
		n = 0
	}
	if err := u.read(b[:4+n+8], h.addr); err != nil {
		h.err = fmt.Errorf(".eh_frame_hdr: %w", err)
		return h
	}
	d = &buf{b: b[:4+n+8], base: h.addr, off: 4}
	d.pointer(ptrEnc, h.addr)
	start := d.off
	h.count = d.pointer(countEnc, h.addr)
	if d.err != nil || encSize(countEnc) == 0 {
		h.err = fmt.Errorf("%w: .eh_frame_hdr count encoding %#x", ErrNoCFI, countEnc)
		return h
	}
	h.table = h.addr + uint64(start+encSize(countEnc))
	h.enc, h.entrySz = tableEnc, 2*uint64(encSize(tableEnc))
	if h.count > maxFDEs {
		h.err = fmt.Errorf(".eh_frame_hdr: %d entries, limit %d", h.count, maxFDEs)
	}
	return h
}

// entry reads entry i of the search table: a start address and its FDE.
func (u *Unwinder) entry(h *hdrInfo, i uint64) (start, fdeAddr uint64, err error) {
	var b [16]byte
	at := h.table + i*h.entrySz
	if err := u.read(b[:h.entrySz], at); err != nil {
		return 0, 0, err
	}
	d := &buf{b: b[:h.entrySz], base: at}
	start = d.pointer(h.enc, h.addr)
	fdeAddr = d.pointer(h.enc, h.addr)
	return start, fdeAddr, d.err
}

// findFDE returns the FDE covering pc, in module mod: .eh_frame's, else
// .debug_frame's.
func (u *Unwinder) findFDE(pc uint64, mod int) (*fde, error) {
	if mod < 0 {
		return nil, fmt.Errorf("%w: %#x is in no mapped file", ErrNoCFI, pc)
	}
	f, err := u.findEhFDE(pc, mod)
	if err == nil {
		return f, nil
	}
	if df := u.debugFrame(mod); df != nil {
		if f := df.find(pc); f != nil {
			return f, nil
		}
	}
	return nil, err
}

// debugFrame returns the .debug_frame of module mod (read once), nil
// when it has none.
func (u *Unwinder) debugFrame(mod int) *DebugFrame {
	df, ok := u.dfs[mod]
	if !ok {
		if load := u.mods[mod].DebugFrame; load != nil {
			df = load()
		}
		u.dfs[mod] = df
	}
	return df
}

// findEhFDE returns the FDE covering pc in module mod's .eh_frame.
func (u *Unwinder) findEhFDE(pc uint64, mod int) (*fde, error) {
	h := u.hdr(mod)
	if h.err != nil {
		return nil, h.err
	}
	// The last entry whose start is <= pc.
	lo, hi := uint64(0), h.count
	for lo < hi {
		mid := lo + (hi-lo)/2
		s, _, err := u.entry(h, mid)
		if err != nil {
			return nil, fmt.Errorf(".eh_frame_hdr entry %d: %w", mid, err)
		}
		if s <= pc {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return nil, fmt.Errorf("%w at %#x", ErrNoCFI, pc)
	}
	_, at, err := u.entry(h, lo-1)
	if err != nil {
		return nil, err
	}
	f, err := u.fdeAt(at)
	if err != nil {
		return nil, err
	}
	if pc < f.start || pc >= f.end {
		return nil, fmt.Errorf("%w at %#x", ErrNoCFI, pc)
	}
	return f, nil
}

// record reads the CIE or FDE at addr: its bytes after the length field
// and their address.
func (u *Unwinder) record(addr uint64) ([]byte, uint64, error) {
	l32, err := memory.U32(u.r, addr)
	u.Reads++
	if err != nil {
		return nil, 0, err
	}
	n, body := uint64(l32), addr+4
	if l32 == 0xffffffff {
		return nil, 0, errors.New("64-bit DWARF record")
	}
	if n < 4 || n > maxRecord {
		return nil, 0, fmt.Errorf("record of %d bytes at %#x", n, addr)
	}
	b := make([]byte, n)
	if err := u.read(b, body); err != nil {
		return nil, 0, err
	}
	return b, body, nil
}

func (u *Unwinder) fdeAt(addr uint64) (*fde, error) {
	if f, ok := u.fdes[addr]; ok {
		return f, nil
	}
	b, body, err := u.record(addr)
	if err != nil {
		return nil, fmt.Errorf("FDE: %w", err)
	}
	cieOff := uint64(memory.Order.Uint32(b))
	if cieOff == 0 || cieOff > body {
		return nil, fmt.Errorf("%w: CIE pointer %#x", errBadFDE, cieOff)
	}
	c, err := u.cieAt(body - cieOff)
	if err != nil {
		return nil, err
	}
	f, err := parseFDE(b[4:], body+4, c)
	if err != nil {
		return nil, err
	}
	if len(u.fdes) >= maxCached {
		clear(u.fdes)
	}
	u.fdes[addr] = f
	return f, nil
}

func (u *Unwinder) cieAt(addr uint64) (*cie, error) {
	if c, ok := u.cies[addr]; ok {
		return c, nil
	}
	b, body, err := u.record(addr)
	if err != nil {
		return nil, fmt.Errorf("CIE: %w", err)
	}
	c, err := parseCIE(b, body)
	if err != nil {
		return nil, err
	}
	if len(u.cies) >= maxCached {
		clear(u.cies)
	}
	u.cies[addr] = c
	return c, nil
}

// FindEhFrameHdr reads, from the ELF header mapped at base (the file's
// offset 0), where its .eh_frame_hdr is loaded: PT_GNU_EH_FRAME's address
// moved by the load bias. 0 when there is none.
func FindEhFrameHdr(r memory.Reader, base uint64) (uint64, error) {
	var eh [64]byte
	if err := memory.Read(r, base, eh[:]); err != nil {
		return 0, err
	}
	if string(eh[:4]) != "\x7fELF" || eh[4] != 2 || eh[5] != 1 {
		return 0, errors.New("not a 64-bit little-endian ELF header")
	}
	phoff := memory.Order.Uint64(eh[0x20:])
	phentsize := uint64(memory.Order.Uint16(eh[0x36:]))
	phnum := uint64(memory.Order.Uint16(eh[0x38:]))
	if phentsize < 56 || phnum == 0 || phnum > maxPhnum || phoff > 1<<20 {
		return 0, fmt.Errorf("program headers: %d of %d bytes at %#x", phnum, phentsize, phoff)
	}
	ph := make([]byte, phnum*phentsize)
	if err := memory.Read(r, base+phoff, ph); err != nil {
		return 0, fmt.Errorf("program headers: %w", err)
	}
	const ptLoad, ptGNUEhFrame = 1, 0x6474e550
	var bias, hdr uint64
	haveBias := false
	for i := uint64(0); i < phnum; i++ {
		p := ph[i*phentsize:]
		typ := memory.Order.Uint32(p)
		off, vaddr := memory.Order.Uint64(p[8:]), memory.Order.Uint64(p[16:])
		switch {
		case typ == ptLoad && !haveBias:
			if off != 0 {
				return 0, errors.New("the first PT_LOAD does not map the ELF header")
			}
			bias, haveBias = base-vaddr, true
		case typ == ptGNUEhFrame:
			hdr = vaddr
		}
	}
	if hdr == 0 || !haveBias {
		return 0, nil
	}
	return hdr + bias, nil
}
