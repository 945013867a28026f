package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// hostileNames runs a function whose file name, function name and thread
// name carry newlines and terminal escape sequences.
const hostileNames = `import sys, threading, time
src = "def f():\n    time.sleep(600)\n"
g = {"time": time}
exec(compile(src, "evil\n\x1b[2J.py", "exec"), g)
f = g["f"]
c = f.__code__.replace(co_name="bad\nname\x1b[31m")
if hasattr(c, "co_qualname"):
    c = c.replace(co_qualname="bad\nname\x1b[31m")
f.__code__ = c
t = threading.Thread(target=f, name="thr\x1b]0;owned\x07\nx")
t.daemon = True
t.start()
time.sleep(0.2)
print("READY")
sys.stdout.flush()
time.sleep(600)
`

// TestHostileNamesEscaped: names read from a target (file and function
// names, thread names) never reach the terminal raw: no escape sequence,
// no line break inside a frame line.
func TestHostileNamesEscaped(t *testing.T) {
	in := anyInterp(t, "3.12", "3.13", "3.11-debian")
	if !in.AtLeast(3, 8) {
		testenv.Skipf(t, "%s: code.replace needs Python 3.8", in.Label)
	}
	tg := testenv.Start(t, in, hostileNames)
	pid := strconv.Itoa(tg.PID)
	for _, args := range [][]string{{"stacks", pid}, {"stacks", "--locals", pid}, {"info", pid}} {
		r := run(t, nil, args...)
		want(t, r, 0)
		if strings.ContainsAny(r.Stdout, "\x1b\x07") {
			t.Fatalf("pyglass %v printed a raw escape sequence:\n%q", args, r.Stdout)
		}
		if args[0] == "info" {
			if !strings.Contains(r.Stdout, `thr\x1b]0;owned\x07\nx`) {
				t.Fatalf("pyglass info: the thread's name is not shown escaped:\n%s", r.Stdout)
			}
			continue
		}
		found := false
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.Contains(l, `File "evil\n\x1b[2J.py", line 2, in bad\nname\x1b[31m`) {
				found = true
			}
		}
		if !found {
			t.Fatalf("pyglass %v: no frame line with the escaped names:\n%s", args, r.Stdout)
		}
	}
	healthy(t, tg)
}
