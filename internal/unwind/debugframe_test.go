package unwind

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// synthDebugFrame builds a .debug_frame describing the synthetic
// module's funcA and funcB at their link-time addresses (the module
// loaded at bias synthBase): one CIE of the version asked, in 32- or
// 64-bit DWARF, then the FDEs (placed after a CIE that no FDE uses, so
// that CIE pointers are not 0).
func synthDebugFrame(version uint8, is64 bool) []byte {
	var sec []byte
	rec := func(id uint64, body []byte) uint64 {
		at := uint64(len(sec))
		var b []byte
		if is64 {
			b = le.AppendUint64(b, id)
		} else {
			b = le.AppendUint32(b, uint32(id))
		}
		b = append(b, body...)
		for len(b)%8 != 4 {
			b = append(b, 0) // DW_CFA_nop
		}
		if is64 {
			sec = le.AppendUint32(sec, 0xffffffff)
			sec = le.AppendUint64(sec, uint64(len(b)))
		} else {
			sec = le.AppendUint32(sec, uint32(len(b)))
		}
		sec = append(sec, b...)
		return at
	}
	cieID := uint64(0xffffffff)
	if is64 {
		cieID = ^uint64(0)
	}
	// Version, no augmentation, [address and segment selector sizes],
	// code align 1, data align -8, return address column 16, then
	// def_cfa rsp+8 and offset r16 at cfa-8.
	body := []byte{version, 0}
	if version == 4 {
		body = append(body, 8, 0)
	}
	body = append(body, 1, 0x78, 16, 0x0c, 7, 8, 0x90, 1)
	rec(cieID, []byte{1, 0, 1, 0x78, 16}) // unused
	cie := rec(cieID, body)
	fde := func(start, size uint64, instr []byte) {
		b := le.AppendUint64(nil, start)
		b = le.AppendUint64(b, size)
		rec(cie, append(b, instr...))
	}
	fde(0x1100, 0x100, nil) // out of order: the index sorts them
	fde(0x1000, 0x100, synthFDEA)
	return sec
}

// TestDebugFrameUnwind walks the synthetic stack of a module without
// .eh_frame_hdr with its .debug_frame instead, in every CIE version and
// both DWARF formats: the same frames as with .eh_frame (no frame found
// by frame pointer before the code without CFI), the index read once.
func TestDebugFrameUnwind(t *testing.T) {
	for _, v := range []uint8{1, 3, 4} {
		for _, is64 := range []bool{false, true} {
			df, err := ParseDebugFrame(synthDebugFrame(v, is64), synthBase)
			if err != nil || df.Len() != 2 {
				t.Fatalf("version %d, 64-bit %v: %d FDEs, %v", v, is64, df.Len(), err)
			}
			f, mod := synthModule(synthFDEA)
			loads := 0
			mod.DebugFrame = func() *DebugFrame { loads++; return df }
			frames, err := New(f, AMD64, []Module{mod}).Unwind(synthStack(f), 0)
			want := []Frame{
				{PC: synthBase + 0x1050, SP: 0x7000, Module: 0},
				{PC: synthBase + 0x1180, SP: 0x7020, Module: 0},
				{PC: 0x3000, SP: 0x7028, Module: -1},
				{PC: 0x3100, SP: 0x7110, Module: -1, FP: true},
			}
			if err != nil || len(frames) != len(want) {
				t.Fatalf("version %d, 64-bit %v: frames %+v, %v; want %+v", v, is64, frames, err, want)
			}
			for i := range want {
				if frames[i] != want[i] {
					t.Errorf("version %d, 64-bit %v: frame %d: %+v, want %+v", v, is64, i, frames[i], want[i])
				}
			}
			if loads != 1 {
				t.Errorf("the .debug_frame was asked for %d times, want once", loads)
			}
		}
	}
}

// TestDebugFrameHostile: malformed sections index what they can and
// say why they stopped; never a panic.
func TestDebugFrameHostile(t *testing.T) {
	good := synthDebugFrame(3, false)
	cases := map[string]struct {
		sec  []byte
		fdes int
		err  string
	}{
		"truncated":      {good[:len(good)-3], 1, "record of"},
		"huge length":    {append(append([]byte{}, good...), 0xf0, 0xff, 0xff, 0x7f, 1), 2, "record of"},
		"64-bit cut":     {append(append([]byte{}, good...), 0xff, 0xff, 0xff, 0xff, 1, 2), 2, "truncated"},
		"padding":        {append(append([]byte{}, good...), 0, 0, 0, 0), 2, ""},
		"bad CIE offset": {func() []byte { b := append([]byte{}, good...); le.PutUint32(b[len(b)-40+4:], 0x7fff0000); return b }(), 1, ""},
		"too big":        {make([]byte, MaxDebugFrame+1), 0, "limit"},
	}
	for name, c := range cases {
		df, err := ParseDebugFrame(c.sec, synthBase)
		if df == nil || df.Len() != c.fdes {
			t.Errorf("%s: %d FDEs, want %d (%v)", name, df.Len(), c.fdes, err)
		}
		if (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want %q", name, err, c.err)
		}
	}
	// Overlapping FDEs: the first by address wins; a bias that wraps an
	// address drops its FDE.
	df, _ := ParseDebugFrame(good, synthBase)
	if f := df.find(synthBase + 0x10ff); f == nil || f.start != synthBase+0x1000 {
		t.Errorf("find(%#x) = %+v", synthBase+0x10ff, f)
	}
	if f := df.find(synthBase + 0x1200); f != nil {
		t.Errorf("find past the end = %+v", f)
	}
	if df, _ := ParseDebugFrame(good, ^uint64(0)-0x1080); df.Len() != 0 {
		t.Errorf("wrapping bias: %d FDEs", df.Len())
	}
}

// TestDebugFrameGCC indexes a real .debug_frame: a library of 300
// functions built by gcc without unwind tables (-g only): each function
// starts an FDE that ends where it ends, and the CFA rules at its
// middle are found (rsp-based: no frame pointer at -O1).
func TestDebugFrameGCC(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to build a library with .debug_frame only")
	}
	dir := t.TempDir()
	var src strings.Builder
	const n = 300
	for i := 0; i < n; i++ {
		fmt.Fprintf(&src, "int g%d(int x) { extern int g%d(int); return x > 0 ? g%d(x - 1) * %d + 1 : %d; }\n", i, (i+1)%n, (i+1)%n, i, i)
	}
	c, so := filepath.Join(dir, "many.c"), filepath.Join(dir, "many.so")
	if err := os.WriteFile(c, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-O1", "-g", "-fno-asynchronous-unwind-tables", "-shared", "-fPIC", "-o", so, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	f, err := elf.Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Section(".debug_frame")
	if s == nil {
		t.Fatal("gcc wrote no .debug_frame")
	}
	sec, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	const bias = 0x7f0000000000
	start := time.Now()
	df, err := ParseDebugFrame(sec, bias)
	if err != nil {
		t.Fatalf("%d FDEs, %v", df.Len(), err)
	}
	t.Logf("%d FDEs from %d bytes in %v", df.Len(), len(sec), time.Since(start))
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	funcs := 0
	for _, sym := range syms {
		if elf.ST_TYPE(sym.Info) != elf.STT_FUNC || !strings.HasPrefix(sym.Name, "g") || sym.Size == 0 {
			continue
		}
		funcs++
		lo, hi := sym.Value+bias, sym.Value+sym.Size+bias
		fd := df.find(lo + sym.Size/2)
		if fd == nil || fd.start != lo || fd.end != hi {
			t.Errorf("%s [%#x, %#x): FDE %+v", sym.Name, lo, hi, fd)
			continue
		}
		if r, err := rowAt(fd, lo+sym.Size/2); err != nil || r.cfaReg != 7 || r.cfaExpr != nil {
			t.Errorf("%s: row %+v, %v", sym.Name, r, err)
		}
	}
	if funcs != n {
		t.Errorf("%d functions in the library, want %d", funcs, n)
	}
}
