package inspect

import (
	"fmt"
	"strings"
	"testing"
	"testing/iotest"
)

// TestWantedLines: the lines asked for, whatever the reads' sizes
// (buffers of 1 to 64 bytes, reads cut short), line ends ("\n", "\r\n",
// none at the end), lines past the end or not positive, and a line
// longer than the bound, which ends the reading.
func TestWantedLines(t *testing.T) {
	var sb strings.Builder
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&sb, "line %d %s\n", i, strings.Repeat("x", i%7))
	}
	text := sb.String()
	crlf := "a\r\nb\r\n\r\nd"
	long := "one\n" + strings.Repeat("y", 100) + "\nthree\n"
	cases := []struct {
		name, text string
		want       []int
		maxLine    int
		out        map[int]string
	}{
		{"some", text, []int{1, 7, 8, 50}, 1000, map[int]string{1: "line 1 x", 7: "line 7 ", 8: "line 8 x", 50: "line 50 x"}},
		{"past the end", text, []int{49, 51, 99}, 1000, map[int]string{49: "line 49 "}},
		{"not positive", text, []int{-1, 0, 2}, 1000, map[int]string{2: "line 2 xx"}},
		{"crlf and no end", crlf, []int{1, 2, 3, 4}, 1000, map[int]string{1: "a", 2: "b", 3: "", 4: "d"}},
		{"empty file", "", []int{1}, 1000, map[int]string{}},
		{"long line", long, []int{1, 2, 3}, 50, map[int]string{1: "one"}},
		{"long line allowed", long, []int{2, 3}, 100, map[int]string{2: strings.Repeat("y", 100), 3: "three"}},
		{"none", text, nil, 1000, map[int]string{}},
	}
	for _, c := range cases {
		for _, size := range []int{1, 2, 3, 7, 64} {
			for _, half := range []bool{false, true} {
				r := strings.NewReader(c.text)
				rd := iotestReader(r, half)
				got := wantedLines(rd, c.want, make([]byte, size), c.maxLine)
				if fmt.Sprint(got) != fmt.Sprint(c.out) {
					t.Errorf("%s (buffer %d, half reads %v): got %v, want %v", c.name, size, half, got, c.out)
				}
			}
		}
	}
}

func iotestReader(r *strings.Reader, half bool) interface{ Read([]byte) (int, error) } {
	if half {
		return iotest.HalfReader(iotest.DataErrReader(r))
	}
	return r
}

// stuck is a reader that never ends and never gives a byte.
type stuck struct{}

func (stuck) Read([]byte) (int, error) { return 0, nil }

// TestWantedLinesStuckReader: a reader that returns nothing, without an
// error, for ever ends the reading instead of hanging it.
func TestWantedLinesStuckReader(t *testing.T) {
	if got := wantedLines(stuck{}, []int{1}, make([]byte, 16), 100); len(got) != 0 {
		t.Fatalf("got %v from a reader that gives nothing", got)
	}
}
