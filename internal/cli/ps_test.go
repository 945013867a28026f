package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pyglass/pyglass"
)

// TestPrintable: text from a target never reaches the terminal raw:
// control characters, escapes, other unprintable runes and invalid UTF-8
// are shown escaped; ordinary text (accents included) is unchanged.
func TestPrintable(t *testing.T) {
	cases := map[string]string{
		"python3 app.py --port 80": "python3 app.py --port 80",
		"café":                     "café",
		"a\nb\tc\rd":               `a\nb\tc\rd`,
		"x\x1b[2Jy":                `x\x1b[2Jy`,
		"bad\xff\xfe":              `bad\xff\xfe`,
		"sep\u2028end":             `sep\u2028end`,
		"nul\x00":                  `nul\x00`,
		"del\x7f":                  `del\x7f`,
	}
	for in, want := range cases {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRenderPSWidth: piped (width 0) nothing is cut; on a terminal each
// line fits its width.
func TestRenderPSWidth(t *testing.T) {
	list := []pyglass.Summary{
		{PID: 10, PPID: 1, User: "www", Version: "3.12.1", Cmdline: []string{"gunicorn: master", strings.Repeat("y", 200)}},
		{PID: 11, PPID: 10, User: "www", Version: "3.12.1", Cmdline: []string{"gunicorn: worker\n[app]"}},
	}
	var b bytes.Buffer
	renderPS(&b, list, true, 0)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[1], strings.Repeat("y", 200)) || !strings.HasSuffix(lines[2], `└─ gunicorn: worker\n[app]`) {
		t.Fatalf("renderPS piped:\n%s", b.String())
	}
	b.Reset()
	renderPS(&b, list, false, 60)
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if n := len([]rune(l)); n > 60 {
			t.Errorf("renderPS width 60: a line of %d columns: %q", n, l)
		}
	}
}
