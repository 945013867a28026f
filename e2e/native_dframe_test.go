package e2e

import (
	"debug/elf"
	"path"
	"path/filepath"
	"testing"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// dframeLibSource is a chain block -> f1 -> f2 -> f3, f3 blocking in
// pause(): built without unwind tables and without frame pointers, its
// only call-frame information is in .debug_frame. The functions are
// exported (interposable: -O1 does not inline them) and each does work
// after its call (no tail call).
const dframeLibSource = `#include <unistd.h>
volatile int stop, depth;
int f3(int n) { while (!stop) pause(); return depth + n; }
int f2(int n) { int r = f3(n + 1); depth += r; return r * 3; }
int f1(int n) { int r = f2(n * 2); depth += r; return r + 5; }
void block(void) { depth += f1(1); }
`

// buildDframeLibs builds, in dir, dframeLibSource as lib_df.so (its
// .debug_frame in it) and lib_dfsep.so (its .debug_frame only in its
// separate debug file .debug/lib_dfsep.debug, found by .gnu_debuglink);
// it checks that neither has an .eh_frame_hdr (what .eh_frame is found
// by: without it, the code has no .eh_frame information for pyglass;
// removing sections with objcopy would break the library's segments).
// It skips without gcc and objcopy.
func buildDframeLibs(t *testing.T, dir string) {
	t.Helper()
	gcc, objcopy, sh := libTools(t, dir, "df.c", dframeLibSource, "to build a library whose only call-frame information is .debug_frame")
	in := func(name string) string { return filepath.Join(dir, name) }
	sh(gcc, "-O1", "-g", "-fno-asynchronous-unwind-tables", "-fomit-frame-pointer", "-shared", "-fPIC", "-o", in("lib_df.so"), in("df.c"))
	sh(objcopy, "--only-keep-debug", in("lib_df.so"), in(".debug/lib_dfsep.debug"))
	sh(objcopy, "--strip-debug", "--add-gnu-debuglink="+in(".debug/lib_dfsep.debug"), in("lib_df.so"), in("lib_dfsep.so"))
	for name, wantDF := range map[string]bool{"lib_df.so": true, "lib_dfsep.so": false, ".debug/lib_dfsep.debug": true} {
		f, err := elf.Open(in(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range f.Sections {
			if s.Name == ".eh_frame_hdr" {
				t.Fatalf("%s has %s: the test needs code with .debug_frame only", name, s.Name)
			}
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_GNU_EH_FRAME {
				t.Fatalf("%s has PT_GNU_EH_FRAME", name)
			}
		}
		if has := f.Section(".debug_frame") != nil; has != wantDF {
			t.Fatalf("%s: .debug_frame present %v, want %v", name, has, wantDF)
		}
		f.Close()
	}
}

// TestStacksNativeDebugFrame: C functions built without unwind tables
// nor frame pointers (-fno-asynchronous-unwind-tables -fomit-frame-pointer
// -g) are unwound with their .debug_frame, from the library itself and
// from its separate debug file: f3, f2, f1 and block, below the Python
// frame that called block through ctypes; live and from a core.
func TestStacksNativeDebugFrame(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		dir := libDir(t, in, "pyglass-dframe-")
		buildDframeLibs(t, dir)
		libs := []string{"lib_df", "lib_dfsep"}
		liveAndCore(t, in, dir, libs, func(d *pyglass.StackDump) bool { return len(chainsFound(d, libs)) == len(libs) },
			func(how string, d *pyglass.StackDump) { checkChains(t, how, d, libs) })
	})
}

// chainsFound gives the libraries of libs whose thread shows, outermost
// first, the Python function run, then (after ctypes' and libffi's
// frames) block, f1, f2 and f3 of that library, in a row.
func chainsFound(d *pyglass.StackDump, libs []string) map[string]bool {
	found := map[string]bool{}
	for _, th := range d.Threads {
		py := false
		for i, f := range th.Frames {
			if !f.Native && f.Function == "run" {
				py = true
			}
			if !py || !f.Native || f.Function != "block" || i+3 >= len(th.Frames) {
				continue
			}
			lib := path.Base(f.File)
			ok := true
			for k, fn := range []string{"f1", "f2", "f3"} {
				g := th.Frames[i+1+k]
				ok = ok && g.Native && g.Function == fn && path.Base(g.File) == lib
			}
			for _, l := range libs {
				if ok && lib == l+".so" {
					found[l] = true
				}
			}
		}
	}
	return found
}

func checkChains(t *testing.T, how string, d *pyglass.StackDump, libs []string) {
	t.Helper()
	found := chainsFound(d, libs)
	for _, l := range libs {
		if !found[l] {
			t.Errorf("%s: %s: no run -> block -> f1 -> f2 -> f3 chain", how, l)
		}
	}
	if t.Failed() {
		for i := range d.Threads {
			t.Logf("%s: thread %s: %s%s", how, d.Threads[i].Name, d.Threads[i].NativeNote, showFrames(&d.Threads[i]))
		}
	}
}
