package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/frame"

	"github.com/pyglass/pyglass/internal/testenv"
)

// TestCFIAgreesWithDelve compares the unwind rules pyglass's CFI parser
// and interpreter give with those of delve's (pkg/dwarf/frame, a
// maintained parser run here as an oracle) on every FDE of the .eh_frame
// of real libraries (libc, each libpython, the sid root's interpreters):
// the FDE found for a pc (its
// range) and, at the FDE's start, one byte in, in its middle and at its
// last byte, the CFA rule and the rules of the 17 amd64 registers.
//
// pyglass keeps its own parser: it reads one FDE at a time through
// .eh_frame_hdr from the target's memory (delve's parses a whole
// section up front), never panics on a hostile one (delve's panics on
// truncated CFA programs, table.go), and reads 64-bit DWARF
// .debug_frame (delve's reads 32-bit only). Where the two differ by
// design the test says so: DW_CFA_restore of a register the CIE gives no
// rule is "same value" for pyglass, as for gdb and libgcc (the register
// was restored by the epilogue), and "undefined" for delve (table.go,
// restore); such rows are counted apart, for every register but the
// return address, whose rules must agree exactly.
func TestCFIAgreesWithDelve(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the comparison names amd64's registers")
	}
	files := realLibraries()
	// The sid root's interpreters link libpython in: 3.14 (PIE and not)
	// and 3.15, the tail-calling evaluation loops.
	if root := testenv.SidRoot(); root != "" {
		for _, exe := range []string{"python3.14", "python3.14-pie", "python3.15", "python3.15d"} {
			files = append(files, filepath.Join(root, "usr", "bin", exe))
		}
	}
	if len(files) == 0 {
		testenv.Skipf(t, "no libc or libpython found")
	}
	seen := map[string]bool{}
	for _, path := range files {
		real, err := filepath.EvalSymlinks(path)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		t.Run(filepath.Base(path), func(t *testing.T) { compareWithDelve(t, real) })
	}
}

func compareWithDelve(t *testing.T, path string) {
	ef, err := elf.Open(path)
	if err != nil {
		t.Skipf("%s: %v", path, err)
	}
	defer ef.Close()
	var base uint64 = 0x7f0000000000 // a library's or a PIE's load bias
	if ef.Type == elf.ET_EXEC {
		base = 0 // loaded where it was linked
	}
	sec, hdrSec := ef.Section(".eh_frame"), ef.Section(".eh_frame_hdr")
	if sec == nil || hdrSec == nil {
		t.Fatalf("%s: no .eh_frame or .eh_frame_hdr", path)
	}
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	fdes, err := delveParse(data, base+sec.Addr) // .eh_frame addresses are pc-relative: no static base
	if err != nil {
		t.Fatalf("delve: %v", err)
	}
	mem, end := loadELF(t, path, base)
	u := New(mem, AMD64, []Module{{Start: base, End: end, Base: base, EhFrameHdr: base + hdrSec.Addr, Path: path}})
	rows, restored, mismatches := 0, 0, 0
	for _, d := range fdes {
		if d.End() <= d.Begin() {
			continue
		}
		for _, pc := range []uint64{d.Begin(), d.Begin() + 1, d.Begin() + (d.End()-d.Begin())/2, d.End() - 1} {
			if pc >= d.End() {
				continue
			}
			f, err := u.findFDE(pc, 0)
			if err != nil {
				t.Errorf("%#x: pyglass finds no FDE: %v", pc-base, err)
				mismatches++
				continue
			}
			if f.start != d.Begin() || f.end != d.End() {
				t.Errorf("%#x: pyglass's FDE covers %#x-%#x, delve's %#x-%#x", pc-base, f.start-base, f.end-base, d.Begin()-base, d.End()-base)
				mismatches++
				continue
			}
			ours, err := rowAt(f, pc)
			if err != nil {
				t.Errorf("%#x: pyglass: %v", pc-base, err)
				mismatches++
				continue
			}
			theirs, err := delveRow(d, pc)
			if err != nil {
				continue // delve could not run it (counted by no one: pyglass did)
			}
			rows++
			diff, byRestore := compareRows(ours, theirs)
			if byRestore {
				restored++
			}
			if diff != "" {
				mismatches++
				if mismatches <= 10 {
					t.Errorf("%#x (FDE %#x-%#x): %s", pc-base, d.Begin()-base, d.End()-base, diff)
				}
			}
		}
	}
	if rows < 400 {
		t.Errorf("only %d rows compared", rows)
	}
	if mismatches > 0 {
		t.Errorf("%d of %d rows differ", mismatches, rows)
	}
	t.Logf("%s: %d FDEs, %d rows agree; %d of them only up to delve's DW_CFA_restore rule", filepath.Base(path), len(fdes), rows-mismatches, restored)
}

// delveParse runs delve's parser, whose panics on malformed input are
// errors here.
func delveParse(data []byte, ehFrameAddr uint64) (fdes frame.FrameDescriptionEntries, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return frame.Parse(data, binary.LittleEndian, 0, 8, ehFrameAddr)
}

func delveRow(d *frame.FrameDescriptionEntry, pc uint64) (fc *frame.FrameContext, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return d.EstablishFrame(pc)
}

// compareRows describes how ours and theirs differ ("" when they agree);
// byRestore: they agree only because an "undefined" of delve's is taken
// for pyglass's "same value" (see TestCFIAgreesWithDelve).
func compareRows(ours row, theirs *frame.FrameContext) (diff string, byRestore bool) {
	switch theirs.CFA.Rule {
	case frame.RuleCFA:
		if ours.cfaExpr != nil || uint64(ours.cfaReg) != theirs.CFA.Reg || ours.cfaOff != theirs.CFA.Offset {
			return fmt.Sprintf("CFA: pyglass r%d%+d (expr %x), delve r%d%+d", ours.cfaReg, ours.cfaOff, ours.cfaExpr, theirs.CFA.Reg, theirs.CFA.Offset), false
		}
	case frame.RuleExpression:
		if !bytes.Equal(ours.cfaExpr, theirs.CFA.Expression) {
			return fmt.Sprintf("CFA expression: pyglass %x, delve %x", ours.cfaExpr, theirs.CFA.Expression), false
		}
	default:
		return fmt.Sprintf("delve's CFA rule %d", theirs.CFA.Rule), false
	}
	const ra = 16
	for reg := 0; reg <= ra; reg++ {
		o := ours.regs[reg]
		d, ok := theirs.Regs[uint64(reg)]
		if !ok {
			d = frame.DWRule{Rule: frame.RuleSameVal}
		}
		same := false
		switch d.Rule {
		case frame.RuleSameVal:
			same = o.kind == ruleSame
		case frame.RuleUndefined:
			same = o.kind == ruleUndef
			if !same && o.kind == ruleSame && reg != ra {
				same, byRestore = true, true
			}
		case frame.RuleOffset:
			same = o.kind == ruleOffset && o.off == d.Offset
		case frame.RuleValOffset:
			same = o.kind == ruleValOffset && o.off == d.Offset
		case frame.RuleRegister:
			same = o.kind == ruleReg && uint64(o.reg) == d.Reg
		case frame.RuleExpression:
			same = o.kind == ruleExpr && bytes.Equal(o.expr, d.Expression)
		case frame.RuleValExpression:
			same = o.kind == ruleValExpr && bytes.Equal(o.expr, d.Expression)
		}
		if !same {
			return fmt.Sprintf("r%d: pyglass %+v, delve %+v", reg, o, d), byRestore
		}
	}
	return "", byRestore
}
