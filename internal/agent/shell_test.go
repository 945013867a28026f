package agent

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// shellStep sends line (unless first) and returns what came back up to
// the next prompt.
type shellSession struct {
	t *testing.T
	c *Conn
	*last
}

type last struct{ lastErr, lastPrompt string }

func (s shellSession) start(main bool) {
	s.t.Helper()
	if err := s.c.StartShell(main); err != nil {
		s.t.Fatal(err)
	}
	out, errs, prompt := s.read()
	if out != "" || errs != "" || prompt != PromptPrimary {
		s.t.Fatalf("shell start: out %q err %q prompt %q", out, errs, prompt)
	}
}

func (s shellSession) read() (stdout, stderr, prompt string) {
	s.t.Helper()
	var o, e bytes.Buffer
	p, done, err := s.c.ReadOutput(&o, &e)
	if err != nil {
		s.t.Fatalf("reading shell output: %v", err)
	}
	if done {
		return o.String(), e.String(), "<exit>"
	}
	return o.String(), e.String(), p
}

// do sends line and checks stdout, the stderr suffix and the next prompt.
func (s shellSession) do(line, wantOut, wantErrSuffix, wantPrompt string) {
	s.t.Helper()
	if err := s.c.SendLine(line); err != nil {
		s.t.Fatal(err)
	}
	out, errs, prompt := s.read()
	s.lastErr, s.lastPrompt = errs, prompt
	if wantPrompt == "" {
		return
	}
	if out != wantOut || !strings.HasSuffix(errs, wantErrSuffix) || (wantErrSuffix == "" && errs != "") || prompt != wantPrompt {
		s.t.Errorf("after %q: got out %q err %q prompt %q; want out %q err ...%q prompt %q",
			line, out, errs, prompt, wantOut, wantErrSuffix, wantPrompt)
	}
}

func TestShell(t *testing.T) {
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		tg := startTarget(t, py, 3, targetOpts{})

		// Session 0: fresh namespace, the console's behaviour.
		s := shellSession{t, tg.accept(0), &last{}}
		s.start(false)
		s.do("def f(x):", "", "", PromptSecondary)
		s.do("    y = x * 2", "", "", PromptSecondary)
		s.do("    return y", "", "", PromptSecondary)
		s.do("", "", "", PromptPrimary)
		s.do("f(21)", "42\n", "", PromptPrimary)
		s.do("_ + 1", "43\n", "", PromptPrimary)
		s.do("__name__", "'__pyglass__'\n", "", PromptPrimary)
		s.do("print(u'\\xe9' + u'\u4e16')", "\u00e9\u4e16\n", "", PromptPrimary)
		s.do("None", "", "", PromptPrimary)
		s.do("{}['k']", "", "KeyError: 'k'\n", PromptPrimary)
		s.do("f(1)", "2\n", "", PromptPrimary)
		s.do("def g(:", "", "", "")
		if !strings.Contains(s.lastErr, "SyntaxError") || strings.Contains(s.lastErr, "Traceback") || s.lastPrompt != PromptPrimary {
			t.Errorf("syntax error: err %q prompt %q", s.lastErr, s.lastPrompt)
		}
		s.do("if True:", "", "", PromptSecondary)
		if err := s.c.Interrupt(); err != nil {
			t.Fatal(err)
		}
		if out, errs, p := s.read(); out != "" || errs != "KeyboardInterrupt\n" || p != PromptPrimary {
			t.Errorf("interrupt: out %q err %q prompt %q", out, errs, p)
		}
		s.do("import sys; sys.stdout.write('w\\n') and None", "w\n", "", PromptPrimary)
		s.do("exit()", "", "", "<exit>")
		if st, ok := s.c.ExitStatus(); !ok || st != 0 {
			t.Errorf("exit status %d %v", st, ok)
		}
		tg.checkReport(0)

		// Session 1: __main__'s namespace, ended with Ctrl-D.
		s = shellSession{t, tg.accept(1), &last{}}
		s.start(true)
		s.do("__name__", "'__main__'\n", "", PromptPrimary)
		s.do("'run_agent' in dir()", "True\n", "", PromptPrimary)
		if err := s.c.EndShell(); err != nil {
			t.Fatal(err)
		}
		if _, _, p := s.read(); p != "<exit>" {
			t.Errorf("after EndShell: prompt %q", p)
		}
		tg.checkReport(1)

		// Session 2: the client vanishes; the agent must stop and remove
		// its directory within 2 s.
		c := tg.accept(2)
		s = shellSession{t, c, &last{}}
		s.start(false)
		s.do("x = 1", "", "", PromptPrimary)
		c.Close()
		start := time.Now()
		tg.checkReport(2)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("agent took %v to notice the client vanished", d)
		}
		tg.finish()
	})
}

// TestShellConcurrent runs two shell sessions at once in one target: each
// has its own namespace and output, the target's output stays its own.
func TestShellConcurrent(t *testing.T) {
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		tg := startTarget(t, py, 2, targetOpts{parallel: true})
		a := shellSession{t, tg.accept(0), &last{}}
		b := shellSession{t, tg.accept(1), &last{}}
		if a.c.Hello().Ident == b.c.Hello().Ident {
			t.Fatalf("both sessions on thread %d", a.c.Hello().Ident)
		}
		a.start(false)
		b.start(false)
		a.do("v = 'a'", "", "", PromptPrimary)
		b.do("v = 'b'", "", "", PromptPrimary)
		a.do("print(v)", "a\n", "", PromptPrimary)
		b.do("print(v)", "b\n", "", PromptPrimary)
		a.do("import sys; sys.stderr.write('ea\\n') and None", "", "ea\n", PromptPrimary)
		a.do("exit(4)", "", "", "<exit>")
		if st, _ := a.c.ExitStatus(); st != 4 {
			t.Errorf("exit(4) gave status %d", st)
		}
		// a ended while b was active: the routers stayed for b.
		line := tg.waitLine("REPORT 0 ", 20*time.Second)
		if want := "REPORT 0 added=- stdout=False stderr=False stdin=False displayhook=False hub=True dir=False stdinclosed=False threads=- kept=False"; line != want {
			t.Errorf("after the first session:\n got %s\nwant %s", line, want)
		}
		// b still works after a left.
		b.do("v * 2", "'bb'\n", "", PromptPrimary)
		b.do("quit()", "", "", "<exit>")
		tg.checkReport(1)
		tg.finish()
		for _, d := range tg.dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("%s not removed", d)
			}
		}
	})
}
