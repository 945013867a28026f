package agent

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

type execCase struct {
	name     string
	code     string
	filename string
	check    func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int)
}

type teeWriter struct {
	a, b interface{ Write([]byte) (int, error) }
}

func (w teeWriter) Write(p []byte) (int, error) {
	w.a.Write(p)
	return w.b.Write(p)
}

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		if len(got) > 400 || len(want) > 400 {
			t.Errorf("%s: got %d bytes, want %d bytes (first difference at %d)", what, len(got), len(want), firstDiff(got, want))
			return
		}
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) < len(b) {
		return len(a)
	}
	return len(b)
}

func bigText() string {
	var b strings.Builder
	for b.Len() < 5<<20 {
		b.WriteString("0123456789abcdef \u00e9\u4e16\n")
	}
	return b.String()
}

var execCases = []execCase{
	{
		name: "output",
		code: "# -*- coding: utf-8 -*-\nimport sys\n" +
			"print(u'h\\xe9llo \\u4e16\\u754c')\n" +
			"print('s\u00e9')\n" +
			"sys.stdout.write(u'w\\xe9\\n')\n" +
			"sys.stderr.write('err line\\n')\n" +
			"print(__name__)\n" +
			"getattr(sys.stdout, 'buffer', sys.stdout).write(b'raw \\xff\\n')\n" +
			"print('enc=%s tty=%s' % (sys.stdout.encoding, sys.stdout.isatty()))\n" +
			"sys.stdout.flush()\n" +
			"sys.stderr.write('last')\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, "h\u00e9llo \u4e16\u754c\ns\u00e9\nw\u00e9\n__pyglass__\nraw \xff\nenc=utf-8 tty=False\n")
			expect(t, "stderr", stderr, "err line\nlast")
			expect(t, "order", both, "h\u00e9llo \u4e16\u754c\ns\u00e9\nw\u00e9\nerr line\n__pyglass__\nraw \xff\nenc=utf-8 tty=False\nlast")
			expect(t, "status", fmt.Sprint(status), "0")
		},
	},
	{
		name: "utf8-without-cookie",
		code: "print(u'\u00e9\u4e16')\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, "\u00e9\u4e16\n")
			expect(t, "stderr", stderr, "")
		},
	},
	{
		name: "5MB-one-write",
		code: "import sys\ns = u'0123456789abcdef \\xe9\\u4e16\\n'\nn = (5 << 20) // len(s.encode('utf-8')) + 1\nsys.stdout.write(s * n)\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, bigText())
			expect(t, "status", fmt.Sprint(status), "0")
		},
	},
	{
		name: "100k-prints",
		code: "for i in range(100000):\n    print('line %d' % i)\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			var b strings.Builder
			for i := 0; i < 100000; i++ {
				fmt.Fprintf(&b, "line %d\n", i)
			}
			expect(t, "stdout", stdout, b.String())
		},
	},
	{
		name: "exception",
		code: "def f():\n    raise ValueError('boom')\nprint('before')\nf()\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, "before\n")
			want := "Traceback (most recent call last):\n  File \"<string>\", line 4, in <module>\n  File \"<string>\", line 2, in f\nValueError: boom\n"
			expect(t, "stderr", stderr, want)
			expect(t, "status", fmt.Sprint(status), "1")
		},
	},
	{
		name:     "exception-in-script",
		filename: "/nonexistent/dir/script.py",
		code:     "x = 1\nraise KeyError('k')\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			if !strings.HasPrefix(stderr, "Traceback (most recent call last):\n  File \"/nonexistent/dir/script.py\", line 2, in <module>\n") ||
				!strings.HasSuffix(stderr, "KeyError: 'k'\n") {
				t.Errorf("stderr: %q", stderr)
			}
			if py.Major == 3 && !strings.Contains(stderr, "    raise KeyError('k')\n") {
				t.Errorf("stderr lacks the source line: %q", stderr)
			}
			expect(t, "status", fmt.Sprint(status), "1")
		},
	},
	{
		name: "syntax-error",
		code: "print('ok')\ndef f(:\n    pass\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, "")
			if !strings.HasPrefix(stderr, "  File \"<string>\", line 2\n") || !strings.Contains(stderr, "SyntaxError: ") {
				t.Errorf("stderr: %q", stderr)
			}
			expect(t, "status", fmt.Sprint(status), "1")
		},
	},
	{
		name: "sys-exit-3",
		code: "import sys\nprint('a')\nsys.exit(3)\nprint('b')\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, "a\n")
			expect(t, "stderr", stderr, "")
			expect(t, "status", fmt.Sprint(status), "3")
		},
	},
	{
		name: "sys-exit-message",
		code: "import sys\nsys.exit('bye')\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stderr", stderr, "bye\n")
			expect(t, "status", fmt.Sprint(status), "1")
		},
	},
	{
		name: "site-exit",
		code: "exit()\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stderr", stderr, "")
			expect(t, "status", fmt.Sprint(status), "0")
		},
	},
	{
		name: "keyboard-interrupt",
		code: "raise KeyboardInterrupt\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			if !strings.HasSuffix(stderr, "KeyboardInterrupt\n") {
				t.Errorf("stderr: %q", stderr)
			}
			expect(t, "status", fmt.Sprint(status), "1")
		},
	},
	{
		// The target uses these after every session ended (target.py).
		name: "keep-routers",
		code: "import sys\nsys._pyglass_test_saved = (sys.stdout, sys.stderr, getattr(sys.stdout, 'buffer', None), sys.stdin, sys.displayhook)\nprint('kept')\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, "kept\n")
			expect(t, "stderr", stderr, "")
			expect(t, "status", fmt.Sprint(status), "0")
		},
	},
	{
		name: "fresh-namespace",
		code: "print(sorted(globals().keys()))\nimport json\nprint(json.dumps({'a': [1, 2]}))\n",
		check: func(t *testing.T, py testenv.Interp, stdout, stderr, both string, status int) {
			expect(t, "stdout", stdout, "['__builtins__', '__name__']\n{\"a\": [1, 2]}\n")
			expect(t, "stderr", stderr, "")
		},
	},
}

// TestExec runs every exec case, one agent session after the other, in
// one target per interpreter whose main thread keeps printing.
func TestExec(t *testing.T) {
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		base := printBaseline(t, py)
		tg := startTarget(t, py, len(execCases), targetOpts{})
		for i, ec := range execCases {
			c := tg.accept(i)
			h := c.Hello()
			if h.PID != tg.PID || h.TID == 0 || h.TID == h.PID || !strings.HasPrefix(h.Version, py.Version()+".") || h.Executable == "" {
				t.Errorf("hello: %+v", h)
			}
			var out, errb bytes.Buffer
			var both testenv.SyncBuffer // stdout and stderr, to check their order
			filename := ec.filename
			if filename == "" {
				filename = "<string>"
			}
			start := time.Now()
			status, err := c.Exec([]byte(ec.code), filename, teeWriter{&out, &both}, teeWriter{&errb, &both})
			if err != nil {
				t.Fatalf("%s: %v", ec.name, err)
			}
			t.Run(ec.name, func(t *testing.T) {
				ec.check(t, py, out.String(), errb.String(), both.String(), status)
				if strings.Contains(out.String()+errb.String(), "tick ") {
					t.Errorf("the target's own output was captured")
				}
				if strings.Contains(errb.String(), "pyglass-agent") {
					t.Errorf("traceback shows agent frames: %q", errb.String())
				}
			})
			// (relative to the interpreter's own speed, measured now: a
			// debug build on a loaded machine is several times slower)
			if d := time.Since(start); d > 10*time.Second+10*base {
				t.Errorf("%s took %v (the interpreter alone prints 100k lines in %v)", ec.name, d, base)
			}
			tg.checkReport(i)
		}
		tg.finish()
	})
}

// printBaseline is how long py takes to run the 100k-prints case itself,
// its output read through a pipe.
func printBaseline(t *testing.T, py testenv.Interp) time.Duration {
	t.Helper()
	var code string
	for _, ec := range execCases {
		if ec.name == "100k-prints" {
			code = ec.code
		}
	}
	cmd := py.Command("-c", code)
	var out bytes.Buffer
	cmd.Stdout = &out
	start := time.Now()
	if err := cmd.Run(); err != nil || out.Len() < 100000 {
		t.Fatalf("%s -c (100k prints): %v, %d bytes", py, err, out.Len())
	}
	return time.Since(start)
}

// TestMissingDir checks that the bootstrap does nothing, silently, when
// the directory is gone, and that an agent whose socket is gone removes
// the directory and runs nothing.
func TestMissingDir(t *testing.T) {
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		tg := startTarget(t, py, 2, targetOpts{noDir: []bool{true, false}, noListen: []bool{true, true}})
		tg.checkReport(0)
		tg.checkReport(1)
		tg.finish()
		if _, err := os.Stat(tg.dirs[1]); !os.IsNotExist(err) {
			t.Errorf("directory without socket not removed: %v", err)
		}
	})
}

// TestMissingPart checks that an agent without its core removes the
// directory and runs nothing, and that one without its shell part refuses
// a shell (status 2) but leaves the target as it was.
func TestMissingPart(t *testing.T) {
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		tg := startTarget(t, py, 2, targetOpts{omit: map[int]string{0: "core.py", 1: "shell.py"}})
		tg.checkReport(0)
		c := tg.accept(1)
		if err := c.StartShell(false); err != nil {
			t.Fatal(err)
		}
		var o, e bytes.Buffer
		_, done, err := c.ReadOutput(&o, &e)
		status, _ := c.ExitStatus()
		if err != nil || !done || status != 2 || !strings.Contains(e.String(), "cannot load the shell") {
			t.Errorf("shell without shell.py: done %v status %d err %v, stderr %q", done, status, err, e.String())
		}
		c.Close()
		tg.checkReport(1)
		tg.finish()
	})
}
