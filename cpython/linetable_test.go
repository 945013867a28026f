package cpython

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

//go:embed testdata/linetable_dump.py
var lineTableDump string

type lineDump struct {
	Version []int `json:"version"`
	Codes   []struct {
		Name    string `json:"name"`
		First   int    `json:"first"`
		Table   string `json:"table"`
		CodeLen int    `json:"codelen"`
		Step    int    `json:"step"`
		Lines   []int  `json:"lines"`
	} `json:"codes"`
}

// TestAddrToLineAgainstInterpreters decodes the line tables of real code
// objects (a tricky sample plus a few stdlib modules) and compares every
// bytecode offset with what the interpreter's own PyCode_Addr2Line says.
func TestAddrToLineAgainstInterpreters(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		t.Parallel()
		cmd := in.Command("-")
		cmd.Stdin = strings.NewReader(lineTableDump)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("running dump script: %v", err)
		}
		var d lineDump
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatalf("decoding dump: %v", err)
		}
		f := LineFormatFor(in.Major, in.Minor)
		checked, bad := 0, 0
		for _, c := range d.Codes {
			table, err := hex.DecodeString(c.Table)
			if err != nil {
				t.Fatalf("%s: bad hex: %v", c.Name, err)
			}
			ranges := LineRanges(f, table, c.First, c.CodeLen)
			for i, want := range c.Lines {
				addr := i * c.Step
				got := AddrToLine(f, table, c.First, addr)
				checked++
				if got != want {
					bad++
					if bad < 10 {
						t.Errorf("%s (first line %d) offset %d: got line %d, want %d", c.Name, c.First, addr, got, want)
					}
				}
				if rl := rangeLine(ranges, addr); rl != got && (f != LnotabSigned && f != LnotabUnsigned || rl != -2) {
					if bad++; bad < 10 {
						t.Errorf("%s offset %d: LineRanges says %d, AddrToLine %d", c.Name, addr, rl, got)
					}
				}
			}
		}
		if checked < 1000 {
			t.Errorf("only %d offsets checked", checked)
		}
		t.Logf("%s: %d code objects, %d offsets, %d mismatches", f, len(d.Codes), checked, bad)
	})
}

func rangeLine(rs []LineRange, addr int) int {
	for _, r := range rs {
		if r.Start <= addr && addr < r.End {
			return r.Line
		}
	}
	return -2
}

func TestAddrToLineHandBuilt(t *testing.T) {
	tests := []struct {
		name  string
		f     LineFormat
		table []byte
		first int
		addr  int
		want  int
	}{
		{"lnotab start", LnotabSigned, []byte{6, 1, 8, 2}, 10, 0, 10},
		{"lnotab second", LnotabSigned, []byte{6, 1, 8, 2}, 10, 6, 11},
		{"lnotab past", LnotabSigned, []byte{6, 1, 8, 2}, 10, 100, 13},
		{"lnotab negative delta", LnotabSigned, []byte{4, 3, 4, 0xfe}, 1, 9, 2},
		{"lnotab 2.7 unsigned", LnotabUnsigned, []byte{4, 0xfe}, 1, 5, 255},
		{"lnotab odd length", LnotabSigned, []byte{4, 1, 4}, 1, 9, 2},
		{"310 basic", Linetable310, []byte{4, 1, 4, 1}, 1, 5, 3},
		{"310 no line", Linetable310, []byte{4, 1, 4, 0x80}, 1, 5, -1},
		{"310 past end", Linetable310, []byte{4, 1}, 1, 5, -1},
		{"310 zero length entries", Linetable310, []byte{0, 127, 0, 127, 2, 1}, 1, 0, 256},
		// Short form (code 0), 1 unit, then one-line-1 (code 11) 2 units.
		{"loc short", Locations, []byte{0x80, 0x05, 0x80 | 11<<3 | 1, 0, 3}, 7, 0, 7},
		{"loc oneline1", Locations, []byte{0x80, 0x05, 0x80 | 11<<3 | 1, 0, 3}, 7, 4, 8},
		{"loc no columns -3", Locations, []byte{0x80 | 13<<3, 7}, 10, 0, 7},
		{"loc long +100", Locations, []byte{0x80 | 14<<3, 0x40 | 8, 3, 0, 1, 1}, 0, 1, 100},
		{"loc none", Locations, []byte{0x80 | 15<<3 | 2}, 10, 4, -1},
		{"loc past end", Locations, []byte{0x80}, 1, 2, -1},
		{"negative addr", Locations, []byte{0x80}, 42, -2, 42},
	}
	for _, tc := range tests {
		if got := AddrToLine(tc.f, tc.table, tc.first, tc.addr); got != tc.want {
			t.Errorf("%s: AddrToLine = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func FuzzLineTable(f *testing.F) {
	f.Add(uint8(LnotabSigned), []byte{6, 1, 8, 2}, 10, 6)
	f.Add(uint8(Linetable310), []byte{0, 127, 2, 0x80}, 1, 1)
	f.Add(uint8(Locations), []byte{0x80 | 14<<3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1, 0)
	f.Fuzz(func(t *testing.T, format uint8, table []byte, first, addr int) {
		lf := LineFormat(format%4 + 1)
		AddrToLine(lf, table, first, addr)
		rs := LineRanges(lf, table, first, addr)
		if len(rs) > len(table)+1 {
			t.Fatalf("%d ranges from %d bytes", len(rs), len(table))
		}
	})
}
