package e2e

import (
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"testing"
	"time"

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

// dframeOtherSource is built with unwind tables, linked with
// dframeLibSource into lib_dfmix.so: that library has an .eh_frame_hdr,
// whose table does not cover f1, f2, f3 and block.
const dframeOtherSource = `int helper(int x) { return x * 2; }
`

// buildDframeLibs builds, in dir, dframeLibSource as lib_df.so (its
// .debug_frame in it), lib_dfsep.so (its .debug_frame only in its
// separate debug file .debug/lib_dfsep.debug, found by .gnu_debuglink)
// and lib_dfmix.so (linked with dframeOtherSource's object, which has
// .eh_frame). It checks that the first two have no .eh_frame_hdr (what
// .eh_frame is found by: without it, the code has no .eh_frame
// information for pyglass; removing sections with objcopy would break
// the library's segments), and the third one has. It skips without gcc
// and objcopy.
func buildDframeLibs(t *testing.T, dir string) {
	t.Helper()
	gcc, objcopy, sh := libTools(t, dir, "df.c", dframeLibSource, "to build a library whose only call-frame information is .debug_frame")
	in := func(name string) string { return filepath.Join(dir, name) }
	sh(gcc, "-O1", "-g", "-fno-asynchronous-unwind-tables", "-fomit-frame-pointer", "-shared", "-fPIC", "-o", in("lib_df.so"), in("df.c"))
	sh(objcopy, "--only-keep-debug", in("lib_df.so"), in(".debug/lib_dfsep.debug"))
	sh(objcopy, "--strip-debug", "--add-gnu-debuglink="+in(".debug/lib_dfsep.debug"), in("lib_df.so"), in("lib_dfsep.so"))
	if err := os.WriteFile(in("other.c"), []byte(dframeOtherSource), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(gcc, "-O1", "-g", "-fno-asynchronous-unwind-tables", "-fomit-frame-pointer", "-fPIC", "-c", "-o", in("df.o"), in("df.c"))
	sh(gcc, "-O1", "-fasynchronous-unwind-tables", "-fPIC", "-c", "-o", in("other.o"), in("other.c"))
	sh(gcc, "-shared", "-Wl,--eh-frame-hdr", "-o", in("lib_dfmix.so"), in("df.o"), in("other.o"))
	for name, want := range map[string]struct{ debugFrame, ehHdr bool }{
		"lib_df.so":              {true, false},
		"lib_dfsep.so":           {false, false},
		".debug/lib_dfsep.debug": {true, false},
		"lib_dfmix.so":           {true, true},
	} {
		f, err := elf.Open(in(name))
		if err != nil {
			t.Fatal(err)
		}
		hdr := false
		for _, p := range f.Progs {
			hdr = hdr || p.Type == elf.PT_GNU_EH_FRAME
		}
		if hdr != want.ehHdr || (f.Section(".eh_frame_hdr") != nil) != want.ehHdr {
			t.Fatalf("%s: .eh_frame_hdr present %v, want %v", name, hdr, want.ehHdr)
		}
		if has := f.Section(".debug_frame") != nil; has != want.debugFrame {
			t.Fatalf("%s: .debug_frame present %v, want %v", name, has, want.debugFrame)
		}
		f.Close()
	}
}

// TestStacksNativeDebugFrame: C functions built without unwind tables
// nor frame pointers (-fno-asynchronous-unwind-tables -fomit-frame-pointer
// -g) are unwound with their .debug_frame, from the library itself, from
// its separate debug file, and in a library whose .eh_frame covers other
// code: f3, f2, f1 and block, below the Python frame that called block
// through ctypes; live and from a core.
func TestStacksNativeDebugFrame(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		dir := libDir(t, in, "pyglass-dframe-")
		buildDframeLibs(t, dir)
		libs := []string{"lib_df", "lib_dfsep", "lib_dfmix"}
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

// TestStacksNativeDebugFrameBuildID: a library whose .debug_frame is only
// in its separate debug file, found by build-id under the sysroot
// (/usr/lib/debug/.build-id/XX/YYY.debug, no .gnu_debuglink), is unwound
// from a core read with --sysroot; without that file it is not.
func TestStacksNativeDebugFrameBuildID(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		dir := libDir(t, in, "pyglass-dframe-")
		buildDframeLibs(t, dir)
		in2 := func(name string) string { return filepath.Join(dir, name) }
		// The debug symbols stay (f3 is named live), .debug_frame goes.
		if out, err := exec.Command("objcopy", "--remove-section", ".debug_frame", in2("lib_df.so"), in2("lib_dfbid.so")).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v: %s", err, out)
		}
		ef, err := elf.Open(in2("lib_dfbid.so"))
		if err != nil {
			t.Fatal(err)
		}
		note := ef.Section(".note.gnu.build-id")
		if note == nil {
			testenv.Skipf(t, "gcc wrote no build-id")
		}
		b, err := note.Data()
		ef.Close()
		if err != nil || len(b) < 20 {
			t.Fatalf("build-id note: %d bytes, %v", len(b), err)
		}
		id := hex.EncodeToString(b[16:])
		libs := []string{"lib_dfbid"}
		tg := testenv.Start(t, in, debugLibTarget, testenv.Args(in.Inside(in2("lib_dfbid.so"))))
		pid := strconv.Itoa(tg.PID)
		// Live, no debug file is found: f3 is named, its callers lost.
		for try := 0; try < 50 && !hasFunction(dumpJSON(t, "stacks", "--native", "--json", pid), "f3"); try++ {
			time.Sleep(100 * time.Millisecond)
		}
		core := filepath.Join(t.TempDir(), "core")
		want(t, run(t, nil, "dump", pid, "-o", core), 0)
		tg.Kill()
		// A sysroot holding the files the core maps.
		root := t.TempDir()
		fillSysroot(t, root, mappedFiles(t, core), "")
		if found := chainsFound(dumpJSON(t, "stacks", "--core", core, "--sysroot", root, "--native", "--json"), libs); found["lib_dfbid"] {
			t.Errorf("the chain is found without the debug file: the test proves nothing")
		}
		dbg := filepath.Join(root, "/usr/lib/debug/.build-id", id[:2], id[2:]+".debug")
		if err := os.MkdirAll(filepath.Dir(dbg), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, in2(".debug/lib_dfsep.debug"), dbg)
		d := dumpJSON(t, "stacks", "--core", core, "--sysroot", root, "--native", "--json")
		checkChains(t, "core with its debug file in the sysroot", d, libs)
	})
}

// hasFunction reports whether a frame of d (merged or apart) is named fn.
func hasFunction(d *pyglass.StackDump, fn string) bool {
	for _, th := range d.Threads {
		for _, f := range append(th.Frames, th.NativeApart...) {
			if f.Function == fn {
				return true
			}
		}
	}
	return false
}
