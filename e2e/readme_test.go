package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// identTarget prints its main thread's ident and never imports threading,
// like `python3 -c 'import time; time.sleep(600)'`.
const identTarget = `import sys, time
try:
    import _thread as thread
except ImportError:
    import thread
sys.stdout.write("MAIN %d\n" % thread.get_ident())
print("READY")
sys.stdout.flush()
time.sleep(600)
`

// TestReadmeTryIt: the README's first example, run as it says, works and
// leaves the target as it was: its main thread is still the main thread
// for threading (importing threading first from pyglass's thread would
// make the agent's thread "main" and the real one a _DummyThread).
func TestReadmeTryIt(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\./pyglass exec \$! -c '([^']*)'`).FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md: no `./pyglass exec $! -c '...'` in the try-it example")
	}
	code := string(m[1])
	const probe = `import sys
t = sys.modules.get("threading")
mt = [x.ident for x in (t.enumerate() if t else []) if type(x).__name__ == "_MainThread"]
print("none" if t is None else mt[0] if mt else "no main thread")`
	forLabels(t, []string{"3.11-debian", "3.11", "3.13", "3.14", "2.7"}, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, identTarget)
		main := strings.TrimPrefix(tg.Stdout()[0], "MAIN ")
		pid := strconv.Itoa(tg.PID)
		before := run(t, nil, "exec", pid, "-c", probe)
		want(t, before, 0)
		r := run(t, nil, "exec", pid, "-c", code)
		want(t, r, 0)
		if !strings.Contains(r.Stdout, in.Version()) {
			t.Fatalf("the README's example does not print the version %s: %s", in.Version(), r)
		}
		after := run(t, nil, "exec", pid, "-c", probe)
		want(t, after, 0)
		if got := strings.TrimSpace(after.Stdout); got != "none" && got != main {
			t.Fatalf("after the README's example threading's main thread is %s, not the target's main thread %s (before: %s)", got, main, strings.TrimSpace(before.Stdout))
		}
		healthy(t, tg)
		noTraces(t, tg)
	})
}
