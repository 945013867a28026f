package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
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

// TestReadmeBuildIsStatic: the README's build command gives what the
// README promises, one static binary: no program interpreter, no shared
// library needed (a plain `go build` links the C library for net's
// resolver). The binary every other test runs is checked too.
func TestReadmeBuildIsStatic(t *testing.T) {
	root := testenv.RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?m)^((?:[A-Z_]+=[^ ]+ )*)go build -o pyglass ./cmd/pyglass").FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md: no `go build -o pyglass ./cmd/pyglass` line")
	}
	bin := filepath.Join(t.TempDir(), "pyglass")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pyglass")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), strings.Fields(string(m[1]))...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's build (%sgo build) failed: %v\n%s", m[1], err, out)
	}
	for name, path := range map[string]string{"the README's build": bin, "the tests' build": testenv.BuildPyglass(t)} {
		if why := notStatic(path); why != "" {
			t.Errorf("%s is not static: %s", name, why)
		}
	}
}

// notStatic says why the ELF file at path needs the dynamic loader, or "".
func notStatic(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "it has a program interpreter (PT_INTERP)"
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return "it needs " + strings.Join(libs, ", ")
	}
	return ""
}
