package e2e

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// vtScreen is the screen of a terminal that has been sent some output:
// enough of a VT100/xterm to follow a full-screen program that moves the
// cursor and redraws only what changed (cursor positioning and motion,
// erasing, text; colours, modes and character sets are ignored). Tests
// look at what the user sees, not at the byte stream.
type vtScreen struct {
	rows, cols int
	cells      [][]rune
	y, x       int
}

func newVTScreen(rows, cols int) *vtScreen {
	s := &vtScreen{rows: rows, cols: cols}
	s.cells = make([][]rune, rows)
	for i := range s.cells {
		s.cells[i] = []rune(strings.Repeat(" ", cols))
	}
	return s
}

// feed applies all of out (the whole output so far, from the start).
func (s *vtScreen) feed(out string) {
	for i := 0; i < len(out); {
		c := out[i]
		switch {
		case c == 0x1b && i+1 < len(out) && out[i+1] == '[':
			j := i + 2
			for j < len(out) && (out[j] < 0x40 || out[j] > 0x7e) {
				j++
			}
			if j >= len(out) {
				return // cut in the middle: the rest comes later
			}
			s.csi(out[i+2:j], out[j])
			i = j + 1
		case c == 0x1b && i+1 < len(out) && out[i+1] == ']':
			// OSC: up to BEL or ESC \
			j := i + 2
			for j < len(out) && out[j] != 0x07 && !(out[j] == 0x1b && j+1 < len(out) && out[j+1] == '\\') {
				j++
			}
			if out[min(j, len(out)-1)] == 0x1b {
				j++
			}
			i = j + 1
		case c == 0x1b && i+1 < len(out) && strings.IndexByte("()*+", out[i+1]) >= 0:
			i += 3 // character set designation
		case c == 0x1b:
			i += 2 // ESC 7, ESC 8, ESC =, ESC >, ...
		case c == '\r':
			s.x = 0
			i++
		case c == '\n':
			s.y = min(s.y+1, s.rows-1)
			i++
		case c == '\b':
			s.x = max(s.x-1, 0)
			i++
		case c < 0x20 || c == 0x7f:
			i++
		default:
			r, n := utf8.DecodeRuneInString(out[i:])
			if s.x < s.cols {
				s.cells[s.y][s.x] = r
				s.x++
			}
			i += n
		}
	}
}

func (s *vtScreen) csi(params string, final byte) {
	if strings.HasPrefix(params, "?") || strings.HasPrefix(params, ">") || strings.HasPrefix(params, "<") || strings.HasPrefix(params, "=") {
		return // private modes
	}
	var n []int
	for _, p := range strings.Split(params, ";") {
		v, _ := strconv.Atoi(p)
		n = append(n, v)
	}
	arg := func(i, def int) int {
		if i < len(n) && n[i] > 0 {
			return n[i]
		}
		return def
	}
	clear := func(y, from, to int) {
		for x := max(from, 0); x < min(to, s.cols); x++ {
			s.cells[y][x] = ' '
		}
	}
	switch final {
	case 'H', 'f':
		s.y, s.x = min(arg(0, 1), s.rows)-1, min(arg(1, 1), s.cols)-1
	case 'A':
		s.y = max(s.y-arg(0, 1), 0)
	case 'B':
		s.y = min(s.y+arg(0, 1), s.rows-1)
	case 'C':
		s.x = min(s.x+arg(0, 1), s.cols-1)
	case 'D':
		s.x = max(s.x-arg(0, 1), 0)
	case 'G':
		s.x = min(arg(0, 1), s.cols) - 1
	case 'd':
		s.y = min(arg(0, 1), s.rows) - 1
	case 'X':
		clear(s.y, s.x, s.x+arg(0, 1))
	case 'K':
		switch arg(0, 0) {
		case 0:
			clear(s.y, s.x, s.cols)
		case 1:
			clear(s.y, 0, s.x+1)
		case 2:
			clear(s.y, 0, s.cols)
		}
	case 'J':
		switch arg(0, 0) {
		case 0:
			clear(s.y, s.x, s.cols)
			for y := s.y + 1; y < s.rows; y++ {
				clear(y, 0, s.cols)
			}
		case 1:
			for y := 0; y < s.y; y++ {
				clear(y, 0, s.cols)
			}
			clear(s.y, 0, s.x+1)
		case 2, 3:
			for y := 0; y < s.rows; y++ {
				clear(y, 0, s.cols)
			}
		}
	}
}

// text returns the screen's lines, trailing blanks cut.
func (s *vtScreen) text() string {
	var b strings.Builder
	for _, l := range s.cells {
		b.WriteString(strings.TrimRight(string(l), " "))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestVTScreen: the emulator follows cursor moves, erasing and redraws in
// place (a unit test of the test helper).
func TestVTScreen(t *testing.T) {
	s := newVTScreen(3, 10)
	s.feed("\x1b[?1049h\x1b[H\x1b[2Jhello\r\nworld\x1b[1;1Hj\x1b[2;3HX\x1b[0m\x1b[3;2Habc\x1b[3;3H\x1b[K")
	if got, want := s.text(), "jello\nwoXld\n a\n"; got != want {
		t.Fatalf("screen %q, want %q", got, want)
	}
}
