package e2e

import (
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// sleepRE matches the C functions a thread sleeping in time.sleep is
// blocked in (select up to 3.10, clock_nanosleep after).
var sleepRE = regexp.MustCompile(`(clock_nanosleep|nanosleep|select)`)

// evalRE matches the evaluation loop's native frames, which a merged
// stack replaces by the Python frames they run.
var evalRE = regexp.MustCompile(`^(_PyEval_EvalFrameDefault|PyEval_EvalFrameEx)`)

// dumpJSON runs pyglass with args (which print a StackDump with --json).
func dumpJSON(t *testing.T, args ...string) *pyglass.StackDump {
	t.Helper()
	r := run(t, nil, args...)
	want(t, r, 0)
	var d pyglass.StackDump
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	return &d
}

// innermostSleeps reports whether thread th's innermost named frame is
// the C sleep of time.sleep, in libc, and the frames after it libc's
// (its hidden functions have no name in a stripped libc).
func innermostSleeps(th *pyglass.ThreadStack) bool {
	if th == nil {
		return false
	}
	for i := len(th.Frames) - 1; i >= 0; i-- {
		f := th.Frames[i]
		if !f.Native || !strings.HasPrefix(path.Base(f.File), "libc") {
			return false
		}
		if f.Function != "" {
			return sleepRE.MatchString(f.Function)
		}
	}
	return false
}

// nativeDump reads the stacks with args until both threads of
// native_target.py sleep in C (READY comes just before they get there).
func nativeDump(t *testing.T, args ...string) *pyglass.StackDump {
	t.Helper()
	var d *pyglass.StackDump
	for try := 0; try < 50; try++ {
		d = dumpJSON(t, args...)
		s, _ := threadByName(d, "sorter")
		m, _ := threadByName(d, "MainThread")
		if s != nil && m != nil && innermostSleeps(s) && innermostSleeps(m) {
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

// pyFunctions lists the functions of the Python frames of th.
func pyFunctions(th *pyglass.ThreadStack) []string {
	var out []string
	for _, f := range th.Frames {
		if !f.Native {
			out = append(out, f.Function)
		}
	}
	return out
}

// interpFileRE matches the base names of the python executable (which
// calls into libpython when that is shared).
var interpFileRE = regexp.MustCompile(`^python[0-9.]*d?$`)

// interpBeforePython counts the native frames of th of the interpreter's
// files (d's libpython or python executable) that come before its
// innermost Python frame: those --native hides and --native-all shows.
func interpBeforePython(d *pyglass.StackDump, th *pyglass.ThreadStack) int {
	last := -1
	for i, f := range th.Frames {
		if !f.Native {
			last = i
		}
	}
	n := 0
	for i := 0; i < last; i++ {
		f := th.Frames[i]
		base := path.Base(f.File)
		if f.Native && (base == path.Base(d.Python.Path) || interpFileRE.MatchString(base)) {
			n++
		}
	}
	return n
}

// checkNativeThread checks a merged stack: no note, no evaluation-loop
// frame left, the same Python frames as the plain read, and the frames
// named by order in that order (a name "py:F" is the Python frame of
// function F, "c:RE" the first native frame after the previous one whose
// function matches RE, "lib:S" one whose file name holds S). Unless all
// (--native-all), no frame of the interpreter's files comes before the
// innermost Python frame; with all, some do (nothing is hidden).
func checkNativeThread(t *testing.T, root string, d *pyglass.StackDump, plain *pyglass.StackDump, all bool, name string, order ...string) {
	t.Helper()
	th, _ := threadByName(d, name)
	pth, _ := threadByName(plain, name)
	if th == nil || pth == nil {
		t.Fatalf("no thread %q in %+v or %+v", name, d, plain)
	}
	show := func() string { return showFrames(th) }
	if th.NativeNote != "" || len(th.NativeApart) > 0 {
		t.Errorf("thread %s: note %q, want none:%s", name, th.NativeNote, show())
	}
	if got, want := strings.Join(pyFunctions(th), " "), strings.Join(pyFunctions(pth), " "); got != want {
		t.Errorf("thread %s: Python frames %q, want %q as without --native:%s", name, got, want, show())
	}
	for _, f := range th.Frames {
		if f.Native && evalRE.MatchString(f.Function) {
			t.Errorf("thread %s: the evaluation loop's frame %s was not replaced:%s", name, f.Function, show())
		}
	}
	if !innermostSleeps(th) {
		t.Errorf("thread %s: the innermost frame is not libc's sleep:%s", name, show())
	}
	if n := interpBeforePython(d, th); all && n == 0 {
		t.Errorf("thread %s: --native-all shows no interpreter frame before the innermost Python one:%s", name, show())
	} else if !all && n > 0 {
		t.Errorf("thread %s: %d interpreter frames before the innermost Python one, want them hidden:%s", name, n, show())
	}
	checkOrder(t, th, order...)
	checkOffsets(t, th, root)
}

// checkOffsets checks that each native frame no symbol names has, as its
// offset, an address of an executable segment of its file (the file's
// own address, as addr2line takes it); files are read under root.
func checkOffsets(t *testing.T, th *pyglass.ThreadStack, root string) {
	t.Helper()
	for _, f := range th.Frames {
		if !f.Native || f.Function != "" || f.File == "" {
			continue
		}
		p := f.File
		if root != "" && !strings.HasPrefix(p, root+"/") {
			p = filepath.Join(root, p)
		}
		ef, err := elf.Open(p)
		if err != nil {
			continue
		}
		in := false
		for _, pr := range ef.Progs {
			in = in || (pr.Type == elf.PT_LOAD && pr.Flags&elf.PF_X != 0 && f.Offset >= pr.Vaddr && f.Offset < pr.Vaddr+pr.Memsz)
		}
		ef.Close()
		if !in {
			t.Errorf("thread %s: frame %#x: offset %#x is no code address of %s", th.Name, f.Address, f.Offset, f.File)
		}
	}
}

// startNative starts native_target.py and checks its live merged
// stacks (stacks --native) against its plain ones.
func startNative(t *testing.T, in testenv.Interp) (*testenv.Target, string, *pyglass.StackDump) {
	t.Helper()
	tg := testenv.Start(t, in, testenv.Fixture(t, "native_target.py"))
	pid := strconv.Itoa(tg.PID)
	d := nativeDump(t, "stacks", "--native", "--json", pid)
	plain := dumpJSON(t, "stacks", "--json", pid)
	checkNative(t, in, in.Chroot, d, plain, false, "sorter", "MainThread")
	return tg, pid, d
}

// TestStacksNative: a thread blocked in a Python callback of libc's qsort
// (called through ctypes) and a main thread in time.sleep show, merged,
// the Python frames, the interpreter's C functions, ctypes, qsort and
// the C sleep, in order, on every interpreter; --native stays a read
// (the target runs on, untraced).
func TestStacksNative(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, pid, d := startNative(t, in)
		if tr := tracerOf(t, tg.PID); tr != "0" {
			t.Errorf("the target is still traced by %s", tr)
		}
		if err := tg.Healthy(); err != nil {
			t.Errorf("target after stacks --native: %v", err)
		}
		// The text form shows the C frames too.
		txt := run(t, nil, "stacks", "--native", pid)
		want(t, txt, 0)
		if !regexp.MustCompile(`\(C\) 0x[0-9a-f]+ \S*qsort\S*\+0x[0-9a-f]+ \(libc`).MatchString(txt.Stdout) {
			t.Errorf("the text form shows no qsort frame:\n%s", txt.Stdout)
		}
		all := dumpJSON(t, "stacks", "--native-all", "--json", pid)
		checkNative(t, in, in.Chroot, all, dumpJSON(t, "stacks", "--json", pid), true, "sorter", "MainThread")
		checkCThread(t, tg, d, all)
		// --native needs the threads paused.
		want(t, run(t, nil, "stacks", "--native", "--nonblocking", pid), 2)
	})
}

// namesStatic reports whether pyglass can name the interpreter's static
// functions (time_sleep): its file has a .symtab, or a separate debug
// file is installed for its build-id (Debian's python3.11-dbg) under
// root (the target's root when live; the sysroot, "/" here, for a core).
func namesStatic(t *testing.T, in testenv.Interp, root string, d *pyglass.StackDump) bool {
	t.Helper()
	p := d.Python.Path
	if in.Chroot != "" && !strings.HasPrefix(p, in.Chroot+"/") {
		p = filepath.Join(in.Chroot, p)
	}
	ef, err := elf.Open(p)
	if err != nil {
		t.Fatalf("the interpreter's file: %v", err)
	}
	defer ef.Close()
	if ef.Section(".symtab") != nil {
		return true
	}
	note := ef.Section(".note.gnu.build-id")
	if note == nil {
		return false
	}
	b, err := note.Data()
	if err != nil || len(b) < 17 {
		return false
	}
	id := hex.EncodeToString(b[16:])
	_, err = os.Stat(filepath.Join(root, "/usr/lib/debug/.build-id", id[:2], id[2:]+".debug"))
	return err == nil
}

// checkNative checks the named threads of native_target.py (run by in;
// separate debug files looked for under root), read with --native-all
// when all (the interpreter's C code before <module> shown).
func checkNative(t *testing.T, in testenv.Interp, root string, d, plain *pyglass.StackDump, all bool, threads ...string) {
	t.Helper()
	interp := path.Base(d.Python.Path)
	order := map[string][]string{
		"sorter":     {"py:sorter", "lib:ctypes", "c:qsort", "py:compare", "lib:" + interp},
		"MainThread": {"py:<module>", "py:main_sleep", "lib:" + interp},
	}
	if all {
		order["MainThread"] = append([]string{"lib:" + interp}, order["MainThread"]...)
	}
	if namesStatic(t, in, root, d) {
		// time.sleep's C function is named, from the file's .symtab or
		// its separate debug file (python3.11-dbg for Debian's 3.11).
		order["MainThread"] = append(order["MainThread"], "c:^time_sleep")
	}
	for _, name := range threads {
		checkNativeThread(t, root, d, plain, all, name, order[name]...)
	}
}

// TestStacksNativeCore: the same merged stacks from a core of the same
// target written by pyglass dump (and by gdb's gcore when installed),
// read with stacks --core --native after the target is gone.
func TestStacksNativeCore(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		// Once the live read shows both threads asleep in C, the dump
		// holds them there too (they never wake up).
		tg, pid, live := startNative(t, in)
		cores := map[string]string{"dump": filepath.Join(t.TempDir(), "core")}
		want(t, run(t, nil, "dump", pid, "-o", cores["dump"]), 0)
		if gcore, err := exec.LookPath("gcore"); err == nil {
			cores["gcore"] = filepath.Join(t.TempDir(), "gcore")
			if out, err := exec.Command(gcore, "-o", cores["gcore"], pid).CombinedOutput(); err != nil {
				t.Errorf("gcore: %v: %s", err, out)
			}
			cores["gcore"] += "." + pid
		}
		tg.Kill()
		for how, core := range cores {
			t.Run(how, func(t *testing.T) {
				d := dumpJSON(t, "stacks", "--core", core, "--native", "--json")
				plain := dumpJSON(t, "stacks", "--core", core, "--json")
				threads := []string{"sorter", "MainThread"}
				if how == "gcore" && in.AtLeast(3, 14) {
					// TestCoreGcore's known issue: gcore's cores of 3.14+
					// hold other C stack pages for the second thread than
					// the process had (its Python chain is cut short too).
					threads = threads[1:]
					t.Logf("gcore of %s: the main thread only", in.Label)
				}
				checkNative(t, in, "/", d, plain, false, threads...)
				if how == "dump" {
					all := dumpJSON(t, "stacks", "--core", core, "--native-all", "--json")
					checkNative(t, in, "/", all, plain, true, threads...)
					checkCThread(t, tg, d, all)
				}
				// The core's merged stacks are the live ones.
				for _, name := range threads {
					a, _ := threadByName(d, name)
					b, _ := threadByName(live, name)
					if a == nil || b == nil || len(a.Frames) != len(b.Frames) {
						t.Errorf("thread %s: %d frames in the core, %d live", name, frameCount(a), frameCount(b))
						continue
					}
					for i := range a.Frames {
						// Names may differ: live, debug files are looked
						// for in the target's root, here in the host's.
						if a.Frames[i].Address != b.Frames[i].Address || (in.Chroot == "" && a.Frames[i].Function != b.Frames[i].Function) {
							t.Errorf("thread %s frame %d: %+v in the core, %+v live", name, i, a.Frames[i], b.Frames[i])
						}
					}
				}
			})
		}
	})
}

func frameCount(th *pyglass.ThreadStack) int {
	if th == nil {
		return -1
	}
	return len(th.Frames)
}

// showFrames renders th's frames for a failure message.
func showFrames(th *pyglass.ThreadStack) string {
	var b strings.Builder
	for _, f := range th.Frames {
		if f.Native {
			b.WriteString("\n  (C) " + f.Function + " " + path.Base(f.File))
		} else {
			b.WriteString("\n  " + f.Function + " " + f.File + ":" + strconv.Itoa(f.Line))
		}
	}
	for _, f := range th.NativeApart {
		b.WriteString("\n  apart: " + f.Function + " " + path.Base(f.File))
	}
	return b.String()
}

// checkOrder checks that th has the frames named by order, in that order
// (a name "py:F" is the Python frame of function F, "c:RE" a native frame
// whose function matches RE, "lib:S" one whose file name holds S).
func checkOrder(t *testing.T, th *pyglass.ThreadStack, order ...string) {
	t.Helper()
	at := 0
	for _, o := range order {
		kind, what, _ := strings.Cut(o, ":")
		found := false
		for ; at < len(th.Frames) && !found; at++ {
			f := th.Frames[at]
			switch kind {
			case "py":
				found = !f.Native && f.Function == what
			case "c":
				found = f.Native && regexp.MustCompile(what).MatchString(f.Function)
			case "lib":
				found = f.Native && strings.Contains(path.Base(f.File), what)
			}
		}
		if !found {
			t.Errorf("thread %s: no %s after the frames before it (order %v):%s", th.Name, o, order, showFrames(th))
			return
		}
	}
}

// TestStacksNativeSegv: the kernel's core of a target that faulted in C
// (ctypes.string_at(1): libc's strlen at address 1) shows, merged, the
// Python frames down to crash_here, then ctypes, then the faulting libc
// function, innermost.
func TestStacksNativeSegv(t *testing.T) {
	needKernelCores(t)
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "core_target.py"))
		tg.Send("segv")
		core := kernelCore(t, tg)
		d, _ := coreStacks(t, in, core, "SIGSEGV (address not mapped) at 0x1", append(sysroot(in), "--native")...)
		main, _ := threadByName(d, "MainThread")
		if main == nil || len(main.Frames) == 0 {
			t.Fatalf("no main thread: %+v", d.Threads)
		}
		if main.NativeNote != "" {
			t.Errorf("note %q:%s", main.NativeNote, showFrames(main))
		}
		checkOrder(t, main, "py:<module>", "py:crash_here", "lib:ctypes")
		last := main.Frames[len(main.Frames)-1]
		if !last.Native || !strings.HasPrefix(path.Base(last.File), "libc") {
			t.Errorf("the innermost frame is not in libc:%s", showFrames(main))
		}
	})
}

// checkCThread checks the thread native_target.py started in C (its id
// on the CTHREAD line): absent from the --native dump d, shown by
// --native-all (all) as a thread Python does not know, blocked in libc's
// pause.
func checkCThread(t *testing.T, tg *testenv.Target, d, all *pyglass.StackDump) {
	t.Helper()
	tid := 0
	for _, l := range tg.Stdout() {
		if rest, ok := strings.CutPrefix(l, "CTHREAD "); ok {
			tid, _ = strconv.Atoi(rest)
		}
	}
	if tid == 0 {
		t.Fatalf("no CTHREAD line in %q", tg.Stdout())
	}
	find := func(d *pyglass.StackDump) *pyglass.ThreadStack {
		for i := range d.Threads {
			if d.Threads[i].TID == tid {
				return &d.Threads[i]
			}
		}
		return nil
	}
	if th := find(d); th != nil {
		t.Errorf("--native shows the C thread %d: %+v", tid, th)
	}
	th := find(all)
	if th == nil || !th.NotPython || len(th.Frames) == 0 {
		t.Fatalf("--native-all: no C thread %d in %+v", tid, all.Threads)
	}
	named := false
	for _, f := range th.Frames {
		if !f.Native || !strings.HasPrefix(path.Base(f.File), "libc") {
			t.Errorf("C thread: frame %+v, want only libc's:%s", f, showFrames(th))
		}
		named = named || f.Function == "pause" || f.Function == "__libc_pause"
	}
	if !named {
		t.Errorf("C thread: no pause frame:%s", showFrames(th))
	}
}
