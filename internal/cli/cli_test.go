package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

func runArgs(args ...string) (ExitCode, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// TestUsage: flags and arguments are checked before any target is
// touched, with a one-line error and exit 2.
func TestUsage(t *testing.T) {
	cases := []struct {
		args []string
		code ExitCode
		msg  string
	}{
		{nil, ExitUsage, "Commands:"},
		{[]string{"frobnicate"}, ExitUsage, "unknown command"},
		{[]string{"exec"}, ExitUsage, "missing PID"},
		{[]string{"exec", "abc", "-c", "pass"}, ExitUsage, "not a process ID"},
		{[]string{"exec", "-5", "-c", "pass"}, ExitUsage, ""},
		{[]string{"exec", "1"}, ExitUsage, "no code"},
		{[]string{"exec", "1", "-c", " \n"}, ExitUsage, "empty"},
		{[]string{"exec", "1", "-c", "pass", "x.py"}, ExitUsage, "not both"},
		{[]string{"exec", "1", "/nonexistent/x.py"}, ExitUsage, "no such file"},
		{[]string{"exec", "1", "-c", "pass", "--timeout", "-1s"}, ExitUsage, "positive"},
		{[]string{"exec", "1", "-c", "pass", "--namespace", "global"}, ExitUsage, "fresh or main"},
		{[]string{"stacks"}, ExitUsage, "missing PID"},
		{[]string{"stacks", "1", "2"}, ExitUsage, "one PID"},
		{[]string{"stacks", "--bogus", "1"}, ExitUsage, "bogus"},
		{[]string{"shell", "1", "--namespace", "other"}, ExitUsage, "fresh or main"},
		{[]string{"trace", "1"}, ExitUsage, "start|stop|status"},
		{[]string{"trace", "pause", "1"}, ExitUsage, "start, stop, status or top"},
		{[]string{"trace", "start", "1", "--by", "file"}, ExitUsage, "--by is for 'trace top'"},
		{[]string{"objects", "1", "--paths"}, ExitUsage, "--paths takes a class name"},
		{[]string{"objects", "1", "--paths", "a;b"}, ExitUsage, "--paths takes a class name"},
		{[]string{"objects", "1", "--diff", "1s", "--paths", "Session"}, ExitUsage, "or none with --diff"},
		{[]string{"trace", "top", "1", "--by", "function"}, ExitUsage, "--by is line, file or traceback"},
		{[]string{"trace", "top", "1", "--limit", "-1"}, ExitUsage, "must not be negative"},
		{[]string{"trace", "start", "1", "--frames", "0"}, ExitUsage, "--frames"},
		{[]string{"objects", "1", "--top", "-1"}, ExitUsage, "negative"},
		{[]string{"garbage", "1", "--limit", "-1"}, ExitUsage, "--limit"},
		{[]string{"ps", "--tree=x"}, ExitUsage, "--tree"},
	}
	for _, c := range cases {
		code, _, errOut := runArgs(c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("pyglass %q: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, errOut, c.code, c.msg)
		}
	}
}

// TestHelp: every command's --help explains it, lists its options and the
// exit codes, on stdout, exit 0.
func TestHelp(t *testing.T) {
	for _, c := range commands {
		code, out, errOut := runArgs(c.name, "--help")
		if code != ExitOK || strings.Count(out, "Usage: pyglass "+c.name) != 1 || !strings.Contains(out, "Exit status:") || errOut != "" {
			t.Errorf("pyglass %s --help: exit %d, stdout %q, stderr %q", c.name, code, out, errOut)
		}
	}
	code, out, _ := runArgs("help")
	if code != ExitOK || !strings.Contains(out, "permission denied") {
		t.Errorf("pyglass help: exit %d, %q", code, out)
	}
	code, out, _ = runArgs("help", "exec")
	if code != ExitOK || !strings.Contains(out, "-timeout") {
		t.Errorf("pyglass help exec: exit %d, %q", code, out)
	}
}

// TestParseInterleaved: flags may come before or after the PID.
func TestParseInterleaved(t *testing.T) {
	fs := newFlags("stacks", "", IO{Err: &bytes.Buffer{}, Out: &bytes.Buffer{}})
	j := fs.Bool("json", false, "")
	pos, _, ok := parse(fs, []string{"--json", "12", "--", "-x"}, IO{})
	if !ok || !*j || len(pos) != 2 || pos[0] != "12" || pos[1] != "-x" {
		t.Fatalf("got %v %v %v", pos, *j, ok)
	}
	_ = context.Background
}

// oneLetter is a one-letter option as the synopses spell them: -c CODE,
// -o FILE.
var oneLetter = regexp.MustCompile(`^  -[A-Za-z] [A-Z]+ `)

// TestHelpSpellsFlags: --help lists the options as the synopsis spells them
// (--json, -c CODE, -o FILE), each on one line with its value's name.
func TestHelpSpellsFlags(t *testing.T) {
	for _, c := range commands {
		_, out, _ := runArgs(c.name, "--help")
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") && !oneLetter.MatchString(l) {
				t.Errorf("pyglass %s --help: option line %q is not spelled --flag", c.name, l)
			}
			if strings.HasPrefix(l, "    \t") {
				t.Errorf("pyglass %s --help: an option's description on its own line: %q", c.name, l)
			}
		}
	}
	_, out, _ := runArgs("objects", "--help")
	for _, want := range []string{"\n  --top N ", "\n  --diff DURATION ", "\n  --json ", "(default 20)"} {
		if !strings.Contains(out, want) {
			t.Errorf("pyglass objects --help lacks %q:\n%s", want, out)
		}
	}
}

// TestFlagErrors: a mistyped or malformed flag is one line naming it as
// the user spells flags, then the command's usage line; nothing more.
func TestFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"stacks", "--jsn", "1"}, "pyglass stacks: unknown option --jsn\n"},
		{[]string{"stacks", "1", "-jsn"}, "pyglass stacks: unknown option --jsn\n"},
		{[]string{"exec", "1", "-c"}, "pyglass exec: missing value for -c\n"},
		{[]string{"objects", "1", "--top", "x"}, "pyglass objects: invalid value \"x\" for flag --top"},
		{[]string{"stacks", "--json=maybe", "1"}, "pyglass stacks: invalid boolean value \"maybe\" for --json"},
	}
	for _, c := range cases {
		code, out, errOut := runArgs(c.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != ExitUsage || out != "" || len(lines) != 2 || !strings.HasPrefix(errOut, c.msg) ||
			!strings.HasPrefix(lines[1], "Usage: pyglass "+c.args[0]+" ") {
			t.Errorf("pyglass %q: exit %d, stdout %q, stderr %q; want exit 2, %q and the usage line", c.args, code, out, errOut, c.msg)
		}
	}
}

// TestVersion: --version and the version command print the version.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-V"}, {"version"}} {
		code, out, errOut := runArgs(args...)
		if code != ExitOK || !strings.HasPrefix(out, "pyglass ") || strings.Count(out, "\n") != 1 || errOut != "" {
			t.Errorf("pyglass %s: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestCutAt(t *testing.T) {
	for _, c := range []struct {
		s     string
		width int
		want  string
	}{
		{"abcdef", 0, "abcdef"},
		{"abcdef", 3, "abc"},
		{"abcdef", 10, "abcdef"},
		{"ab\u4e16cd", 3, "ab"}, // not in the middle of 世
		{"ab\u4e16cd", 5, "ab\u4e16"},
		{"\u00e9\u00e9", 3, "\u00e9"},
	} {
		if got := cutAt(c.s, c.width); got != c.want {
			t.Errorf("cutAt(%q, %d) = %q, want %q", c.s, c.width, got, c.want)
		}
	}
}
