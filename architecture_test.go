package pyglass

import (
	"go/build"
	"go/parser"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The import rules of ARCHITECTURE.md, checked on every package of the
// module (its non-test files, for this machine's GOOS and GOARCH), so
// that the layering cannot drift. Paths are relative to the module.
var (
	// kernelFacing may import golang.org/x/sys/unix.
	kernelFacing = []string{"internal/channel", "internal/coredump", "internal/inject", "internal/ptrace", "internal/remotedebug",
		"internal/procfs", "internal/rootfs", "internal/shell", "target/live"}
	// syscallUsers may import the standard syscall package as well
	// (signals, rusage, credentials): the kernel-facing ones and these.
	syscallUsers = []string{"internal/cli", "internal/pyproc", "internal/testenv", "bench"}
	// pure packages read memory only through memory.Reader: they import
	// no other package of the module but these.
	pure = map[string][]string{
		"memory":                    {},
		"profile":                   {},
		"cpython/layout":            {"memory"},
		"cpython/layout/gen":        {"cpython/layout"},
		"cpython/layout/layouttest": {"cpython/layout"},
		"cpython":                   {"cpython/layout", "memory"},
		"target":                    {"memory"},
		"target/core":               {"memory", "target", "internal/elfsym"},
		"internal/unwind":           {"memory"},
		"internal/errs":             {}, // the one error model: every layer may return it
	}
	// notInRoot are the packages the root package, a facade, does not
	// import: decoding a target is internal/inspect's.
	notInRoot = []string{"cpython", "cpython/layout", "internal/unwind"}
	// facadeUsers see the target only through the public API.
	facadeUsers = map[string][]string{
		"cmd/pyglass":  {"internal/cli"},
		"internal/cli": {"", "leak", "profile", "internal/shell"},
		"leak":         {""},
	}
)

const modulePath = "github.com/pyglass/pyglass"

func TestArchitecture(t *testing.T) {
	pkgs := map[string][]string{} // package dir -> imports
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata") {
			return filepath.SkipDir
		}
		bp, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel := filepath.ToSlash(path)
		if rel == "." {
			rel = ""
		}
		pkgs[rel] = bp.Imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 15 {
		t.Fatalf("found only %d packages: is the test run from the module root?", len(pkgs))
	}
	for dir, imps := range pkgs {
		var own []string
		for _, imp := range imps {
			switch {
			case imp == "golang.org/x/sys/unix" && !slices.Contains(kernelFacing, dir):
				t.Errorf("%s imports golang.org/x/sys/unix: only %v talk to the kernel", name(dir), kernelFacing)
			case imp == "syscall" && !slices.Contains(kernelFacing, dir) && !slices.Contains(syscallUsers, dir):
				t.Errorf("%s imports syscall: only %v and %v may", name(dir), kernelFacing, syscallUsers)
			case imp == modulePath:
				own = append(own, "")
			case strings.HasPrefix(imp, modulePath+"/"):
				own = append(own, strings.TrimPrefix(imp, modulePath+"/"))
			}
		}
		for _, o := range own {
			// Test helper packages (named ...test, imported by tests
			// only: checked next) may use testenv.
			helper := strings.HasSuffix(dir, "test")
			if o == "internal/testenv" && dir != "bench" && dir != "internal/testenv/cmd/coverage-summary" && !helper {
				t.Errorf("%s imports internal/testenv, which is for tests", name(dir))
			}
			if strings.HasSuffix(o, "test") && !helper && dir != "bench" {
				t.Errorf("%s imports the test helper %s", name(dir), o)
			}
		}
		for _, o := range own {
			if dir == "" && slices.Contains(notInRoot, o) {
				t.Errorf("the root package imports %s: it is a facade, whose reads of a target are internal/inspect's", o)
			}
		}
		if allowed, ok := pure[dir]; ok {
			for _, o := range own {
				if !slices.Contains(allowed, o) {
					t.Errorf("%s imports %s: it may import only %v of this module (it must read memory through memory.Reader only)", name(dir), name(o), allowed)
				}
			}
		}
		if allowed, ok := facadeUsers[dir]; ok {
			for _, o := range own {
				if !slices.Contains(allowed, o) {
					t.Errorf("%s imports %s: it may import only %v of this module", name(dir), name(o), names(allowed))
				}
			}
		}
	}
	// The document names the packages it gives rules for.
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	for dir := range pkgs {
		if dir == "" || strings.HasPrefix(dir, "e2e") || strings.Contains(dir, "testdata") || strings.HasSuffix(dir, "test") || strings.HasPrefix(dir, "bench") || strings.HasPrefix(dir, "internal/testenv/") || strings.HasPrefix(dir, "cpython/layout/") {
			continue
		}
		if !strings.Contains(string(doc), dir+" ") {
			t.Errorf("ARCHITECTURE.md does not describe package %s", dir)
		}
	}
}

func name(dir string) string {
	if dir == "" {
		return "pyglass (the module root)"
	}
	return dir
}

func names(dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = name(d)
	}
	return out
}

// procExceptions are the only non-test Go files outside internal/procfs
// that name a /proc path themselves, each with the string literals it may
// use ("" for any: a whole directory of test helpers) and why.
var procExceptions = []struct {
	path     string // a file, or a directory ending in "/"
	literals []string
	why      string
}{
	{"target/live/live.go", []string{"/proc/%d/mem"}, "the one memory reader falls back to /proc/PID/mem when process_vm_readv is missing, and a tracer writes code through it (WriteForced)"},
	{"internal/rootfs/rootfs.go", []string{"/proc/self/fd/"}, "names its own directory fds (procfs imports rootfs, so rootfs cannot use procfs)"},
	{"internal/rootfs/walk.go", []string{"/proc/self/fd/"}, "reopens its own O_PATH fds (procfs imports rootfs, so rootfs cannot use procfs)"},
	{"internal/testenv/", nil, "test helper: reads /proc by itself, independently of the code under test"},
	{"cpython/layout/layouttest/", nil, "test helper of the pure layout package, which may import no kernel-facing package"},
}

// TestArchitectureProc: one /proc parser. No non-test Go file outside
// internal/procfs has a string literal that is a /proc path ("/proc",
// "/proc/...", "/proc/%d/..."), but the exceptions above; and every
// exception is still needed.
func TestArchitectureProc(t *testing.T) {
	used := make([]bool, len(procExceptions))
	files := scanSources(t, func(rel string, pos token.Position, tok token.Token, lit string) {
		if tok != token.STRING {
			return
		}
		s, err := strconv.Unquote(lit)
		if err != nil || s != "/proc" && !strings.HasPrefix(s, "/proc/") {
			return
		}
		allowed := false
		for i, e := range procExceptions {
			if (rel == e.path || strings.HasSuffix(e.path, "/") && strings.HasPrefix(rel, e.path)) &&
				(e.literals == nil || slices.Contains(e.literals, s)) {
				allowed, used[i] = true, true
			}
		}
		if !allowed {
			t.Errorf("%s: %q: /proc is read through internal/procfs (or add a justified exception to procExceptions and ARCHITECTURE.md)", pos, s)
		}
	}, "internal/procfs")
	if files < 100 {
		t.Fatalf("scanned only %d files: is the test run from the module root?", files)
	}
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rule, _ := strings.Cut(string(doc), "One /proc parser:")
	rule, _, _ = strings.Cut(rule, "\n\n")
	for i, e := range procExceptions {
		if !used[i] {
			t.Errorf("exception %s %q is no longer needed: remove it (and from ARCHITECTURE.md)", e.path, e.literals)
		}
		if dir := strings.TrimSuffix(path.Dir(e.path+"x"), "/"); !strings.Contains(rule, "`"+dir+"`") {
			t.Errorf("ARCHITECTURE.md's \"One /proc parser\" paragraph does not list the exception of %s", dir)
		}
	}
}

// TestArchitectureMemory: one memory reader of a live process. No
// non-test Go file outside target/live names process_vm_readv or
// process_vm_writev (unix.ProcessVMReadv, unix.ProcessVMWritev, or their
// system call numbers); /proc/PID/mem is held to target/live by
// TestArchitectureProc.
func TestArchitectureMemory(t *testing.T) {
	banned := []string{"ProcessVMReadv", "ProcessVMWritev", "SYS_PROCESS_VM_READV", "SYS_PROCESS_VM_WRITEV"}
	found := 0
	scanSources(t, func(rel string, pos token.Position, tok token.Token, lit string) {
		if tok != token.IDENT || !slices.Contains(banned, lit) {
			return
		}
		if strings.HasPrefix(rel, "target/live/") {
			found++
			return
		}
		t.Errorf("%s: %s: a live process's memory is read and written through target/live only", pos, lit)
	})
	if found == 0 {
		t.Fatalf("target/live names none of %v: is the test run from the module root?", banned)
	}
}

// scanSources runs fn on every token of the module's non-test Go files
// (testdata and hidden directories, and the directories skip, left out)
// and returns how many files it read.
func scanSources(t *testing.T, fn func(rel string, pos token.Position, tok token.Token, lit string), skip ...string) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(p)
		if d.IsDir() {
			if name := d.Name(); p != "." && (strings.HasPrefix(name, ".") || name == "testdata") || slices.Contains(skip, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		files++
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		var sc scanner.Scanner
		sc.Init(fset.AddFile(rel, -1, len(src)), src, nil, 0)
		for {
			pos, tok, lit := sc.Scan()
			if tok == token.EOF {
				return nil
			}
			fn(rel, fset.Position(pos), tok, lit)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// targetReaders are the files that read a target.Target (in
// internal/inspect: the reads Process and Core share) or a core, each with
// the kernel-facing packages it may import all the same and why: the
// shared reads never touch the kernel, what only a live process has (the
// pause, /proc) stays in Process's wrappers.
var targetReaders = map[string][]string{
	"internal/inspect/targetread.go": nil,
	"internal/inspect/core.go":       nil,
	"core.go":                        {"internal/rootfs"}, // opens the core's sysroot, inside which its files are resolved
	"core_tasks.go":                  nil,
	"core_locks.go":                  nil,
	"target/target.go":               nil,
}

// TestArchitectureTargetRead: the files of targetReaders import neither
// golang.org/x/sys/unix, syscall nor a kernel-facing package of this
// module (ptrace, procfs, target/live...), but their listed exceptions.
func TestArchitectureTargetRead(t *testing.T) {
	for file, allowed := range targetReaders {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, file, nil, parser.ImportsOnly)
		if err != nil {
			t.Errorf("%s: %v (a file of targetReaders that moved? update the list)", file, err)
			continue
		}
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			own := strings.TrimPrefix(imp, modulePath+"/")
			switch {
			case imp == "golang.org/x/sys/unix" || imp == "syscall":
				t.Errorf("%s imports %s: the reads of a target touch no kernel interface", file, imp)
			case own != imp && slices.Contains(kernelFacing, own) && !slices.Contains(allowed, own):
				t.Errorf("%s imports %s, which talks to the kernel: the reads of a target see it only through target.Target", file, own)
			}
		}
	}
}
