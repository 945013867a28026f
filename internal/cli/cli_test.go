package cli

import (
	"bytes"
	"context"
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
		{[]string{"trace", "pause", "1"}, ExitUsage, "start, stop or status"},
		{[]string{"trace", "start", "1", "--frames", "0"}, ExitUsage, "--frames"},
		{[]string{"objects", "1", "--top", "-1"}, ExitUsage, "negative"},
		{[]string{"garbage", "1", "--limit", "-1"}, ExitUsage, "--limit"},
		{[]string{"ps", "1"}, ExitUsage, "no arguments"},
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
