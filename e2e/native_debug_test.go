package e2e

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/ulikunitz/xz"
)

// debugLibSource blocks in a static function, which only a .symtab names.
const debugLibSource = `#include <unistd.h>
static volatile int spin;
static void hidden_wait(void) { for (;;) pause(); }
void block(void) { hidden_wait(); spin++; }
`

// cppLibSource blocks in a C++ method, named mangled in the library.
const cppLibSource = `#include <unistd.h>
namespace pg {
struct Waiter { static int wait(int n); };
int Waiter::wait(int n) { for (;;) pause(); return n; }
}
extern "C" void block(void) { pg::Waiter::wait(1); }
`

// debugLibTarget calls block() of each library of its arguments, each in
// a thread named after the library (the first one in the main thread).
const debugLibTarget = `import ctypes, sys, threading
def run(p):
    ctypes.CDLL(p).block()
for p in sys.argv[2:]:
    t = threading.Thread(target=run, args=(p,), name=p.rsplit("/", 1)[-1].split(".")[0])
    t.daemon = True
    t.start()
sys.stdout.write("READY\n")
sys.stdout.flush()
run(sys.argv[1])
`

// buildDebugLibs builds, in dir, debugLibSource stripped four ways:
// lib_link.so with a .gnu_debuglink to .debug/lib_link.debug, lib_mini.so
// with its .symtab in .gnu_debugdata (MiniDebugInfo), lib_plain.so with
// neither, lib_bad.so with a debug link whose file no longer has the
// recorded CRC; and lib_cpp.so from cppLibSource when g++ is installed.
// It skips without gcc and objcopy.
func buildDebugLibs(t *testing.T, dir string) {
	t.Helper()
	gcc, objcopy, sh := libTools(t, dir, "lib.c", debugLibSource, "to build libraries with separate debug symbols")
	in := func(name string) string { return filepath.Join(dir, name) }
	sh(gcc, "-O0", "-g", "-shared", "-fPIC", "-fno-omit-frame-pointer", "-o", in("full.so"), in("lib.c"))
	sh(objcopy, "--strip-all", in("full.so"), in("lib_plain.so"))
	for _, name := range []string{"lib_link", "lib_bad"} {
		dbg := in(".debug/" + name + ".debug")
		sh(objcopy, "--only-keep-debug", in("full.so"), dbg)
		sh(objcopy, "--add-gnu-debuglink="+dbg, in("lib_plain.so"), in(name+".so"))
	}
	// lib_bad's debug file changes after the link recorded its CRC.
	f, err := os.OpenFile(in(".debug/lib_bad.debug"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
	// MiniDebugInfo: the symbols alone, xz-compressed, in .gnu_debugdata.
	sh(objcopy, "--only-keep-debug", "--strip-debug", in("full.so"), in("mini.elf"))
	elfData, err := os.ReadFile(in("mini.elf"))
	if err != nil {
		t.Fatal(err)
	}
	zf, err := os.Create(in("mini.xz"))
	if err != nil {
		t.Fatal(err)
	}
	zw, err := xz.NewWriter(zf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(elfData); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zf.Close()
	sh(objcopy, "--add-section", ".gnu_debugdata="+in("mini.xz"), in("lib_plain.so"), in("lib_mini.so"))
	if gxx, err := exec.LookPath("g++"); err == nil {
		if err := os.WriteFile(in("cpp.cc"), []byte(cppLibSource), 0o644); err != nil {
			t.Fatal(err)
		}
		sh(gxx, "-O0", "-shared", "-fPIC", "-fno-omit-frame-pointer", "-o", in("lib_cpp.so"), in("cpp.cc"))
	}
}

// libTools finds gcc and objcopy (skipping t without them: they are
// needed for what) and writes, in dir, the C source src as name and
// creates dir/.debug; sh runs a command, failing t when it fails.
func libTools(t *testing.T, dir, name, src, what string) (gcc, objcopy string, sh func(name string, args ...string)) {
	t.Helper()
	var tools []string
	for _, name := range []string{"gcc", "objcopy"} {
		p, err := exec.LookPath(name)
		if err != nil {
			testenv.Skipf(t, "no %s %s", name, what)
		}
		tools = append(tools, p)
	}
	sh = func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, ".debug"), 0o755); err != nil {
		t.Fatal(err)
	}
	return tools[0], tools[1], sh
}

// libDir makes a directory, removed after t, that the target run by in
// can read (inside its root for a chrooted one).
func libDir(t *testing.T, in testenv.Interp, prefix string) string {
	t.Helper()
	base := os.TempDir()
	if in.Chroot != "" {
		base = filepath.Join(in.Chroot, "/var/tmp")
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// liveAndCore runs debugLibTarget with the libraries libs of dir (it
// calls block() of each, each in its own thread) and checks, with
// check, its native stacks: live (once ready says they are all there,
// or after 5 s), then from a core written by pyglass dump (which names
// a chrooted target's files by their paths on the host).
func liveAndCore(t *testing.T, in testenv.Interp, dir string, libs []string, ready func(*pyglass.StackDump) bool, check func(how string, d *pyglass.StackDump)) {
	t.Helper()
	var args []string
	for _, l := range libs {
		args = append(args, in.Inside(filepath.Join(dir, l+".so")))
	}
	tg := testenv.Start(t, in, debugLibTarget, testenv.Args(args...))
	pid := strconv.Itoa(tg.PID)
	var d *pyglass.StackDump
	for try := 0; try < 50; try++ {
		d = dumpJSON(t, "stacks", "--native", "--json", pid)
		if ready(d) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	check("live", d)
	core := filepath.Join(t.TempDir(), "core")
	want(t, run(t, nil, "dump", pid, "-o", core), 0)
	tg.Kill()
	check("core", dumpJSON(t, "stacks", "--core", core, "--native", "--json"))
}

// TestStacksNativeDebugFiles: a stripped library's static function is
// named from its separate debug file found by .gnu_debuglink (in the
// .debug directory beside it, inside the target's root, CRC checked) and
// from its MiniDebugInfo (.gnu_debugdata); not when the debug file's CRC
// differs, nor without either (only .dynsym's block is named then). A
// C++ method is shown demangled.
func TestStacksNativeDebugFiles(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		dir := libDir(t, in, "pyglass-debuglibs-")
		buildDebugLibs(t, dir)
		libs := []string{"lib_link", "lib_mini", "lib_plain", "lib_bad"}
		if _, err := os.Stat(filepath.Join(dir, "lib_cpp.so")); err == nil {
			libs = append(libs, "lib_cpp")
		} else {
			t.Logf("no g++: C++ names not checked")
		}
		liveAndCore(t, in, dir, libs, func(d *pyglass.StackDump) bool { return len(calledByBlock(d)) == len(libs) },
			func(how string, d *pyglass.StackDump) { checkDebugNames(t, how, d, libs) })
	})
}

// calledByBlock gives, by library file name, the function of the frame
// that block() of that library calls (hidden_wait, named or not).
func calledByBlock(d *pyglass.StackDump) map[string]string {
	names := map[string]string{}
	for _, th := range d.Threads {
		for i, f := range th.Frames {
			lib := path.Base(f.File)
			if f.Native && f.Function == "block" && i+1 < len(th.Frames) && path.Base(th.Frames[i+1].File) == lib {
				names[lib] = th.Frames[i+1].Function
			}
		}
	}
	return names
}

// checkDebugNames checks that hidden_wait is named in lib_link and
// lib_mini only, and lib_cpp's method demangled.
func checkDebugNames(t *testing.T, how string, d *pyglass.StackDump, libs []string) {
	t.Helper()
	names := calledByBlock(d)
	for _, l := range libs {
		got, ok := names[l+".so"]
		want := map[string]string{"lib_link": "hidden_wait", "lib_mini": "hidden_wait", "lib_cpp": "pg::Waiter::wait(int)"}[l]
		if !ok || got != want {
			t.Errorf("%s: %s: the frame called by block is named %q (found: %v), want %q", how, l, got, ok, want)
		}
	}
	if t.Failed() {
		for i := range d.Threads {
			t.Logf("%s: thread %s:%s", how, d.Threads[i].Name, showFrames(&d.Threads[i]))
		}
	}
}
