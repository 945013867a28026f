package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// Command is one technique the harness times against an idle target. To add
// one, append it to commands: Argv receives the target and returns the
// command line to run (or an error saying why it cannot run there).
type Command struct {
	// Name is the row's name in the table.
	Name string
	// Baseline names the command whose median the ratio column divides
	// by ("" for a baseline itself).
	Baseline string
	// Argv builds the command line for one run against target tg.
	Argv func(env *Env, tg *Target) ([]string, error)
	// Applies reports whether the command makes sense on in (nil: always).
	Applies func(in testenv.Interp) bool
	// Target is the fixture the command runs against (Idle by default).
	Target Fixture
	// Group is a second name -only matches, shared by related rows.
	Group string
	// Goal, when set, is the most the median wall time should be (an
	// issue's target on this project's machine): the note says whether
	// the median meets it.
	Goal time.Duration
}

// Env is what commands may use: the tools' paths.
type Env struct {
	Pyglass    string // path to the pyglass binary ("" when the build failed)
	PyglassErr error  // why Pyglass is empty
	Hello      string // a Go hello-world ("" when its build failed)
	HelloErr   error  // why Hello is empty
	// GDB is the command prefix that runs gdb (a path, or a wrapper that
	// runs sid's gdb inside the sid root).
	GDB []string
	// HostGDB runs the host's gdb, whose auto-load directory holds the
	// py-bt extension of Debian's python3.11-dbg.
	HostGDB []string
}

func gdbCall(env *Env, tg *Target, code string) []string {
	args := []string{"-p", fmt.Sprint(tg.PID), "-batch", "-nx",
		"-ex", "set confirm off",
		"-ex", "call (int)PyGILState_Ensure()",
		"-ex", fmt.Sprintf("call (int)PyRun_SimpleString(%q)", code),
		"-ex", "call (void)PyGILState_Release($1)"}
	if tg.Interp.Chroot != "" && tg.Interp.Chroot == testenv.SidRoot() && isSidGDB(env) {
		// A target in the sid root runs in a mount namespace of its
		// own: gdb must be in the same one (and the same root), else
		// the paths /proc/PID/maps gives it are the host's, gdb loads
		// the wrong files, misplaces libc and the call kills the target.
		return inRoot(tg, append([]string{"/usr/bin/gdb"}, args...)...)
	}
	return append(append([]string(nil), env.GDB...), args...)
}

// isSidGDB reports whether env runs the sid root's gdb.
func isSidGDB(env *Env) bool {
	w := sidGDB(testenv.SidRoot())
	return len(env.GDB) == len(w) && env.GDB[len(w)-1] == w[len(w)-1] && env.GDB[0] == w[0]
}

func pyglass(env *Env, args ...string) ([]string, error) {
	if env.Pyglass == "" {
		return nil, fmt.Errorf("no pyglass binary: %v", env.PyglassErr)
	}
	return append([]string{env.Pyglass}, args...), nil
}

// tracebackCode prints every thread's stack on the target's stderr: the
// usual way to get Python stacks with gdb on an interpreter without
// debug symbols.
const tracebackCode = "import sys, traceback\n" +
	"for tid, f in sys._current_frames().items():\n" +
	"    sys.stderr.write('thread %d\\n' % tid)\n" +
	"    traceback.print_stack(f)\n"

// gdbGarbageCode and gdbCensusCode are the gdb-era leak reports: the
// result lands in a file the target writes (Python 2.7 and 3.x).
const gdbGarbageCode = "import gc\n" +
	"f = open('/tmp/pyglass-bench-gdb-garbage.txt', 'w')\n" +
	"f.write(str(gc.garbage))\n" +
	"f.close()\n"

const gdbCensusCode = "import gc\n" +
	"c = {}\n" +
	"for o in gc.get_objects():\n" +
	"    t = type(o).__name__\n" +
	"    c[t] = c.get(t, 0) + 1\n" +
	"f = open('/tmp/pyglass-bench-gdb-census.txt', 'w')\n" +
	"f.write(repr(sorted(c.items(), key=lambda kv: -kv[1])[:10]))\n" +
	"f.close()\n" +
	"del c, o, t, f\n"

var commands = []Command{
	// Start-up: pyglass's own cost before it looks at any process,
	// against the floor of any Go program.
	{
		Name:  "go hello-world",
		Group: "start",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			if env.Hello == "" {
				return nil, env.HelloErr
			}
			return []string{env.Hello}, nil
		},
	},
	{
		Name:     "pyglass version",
		Baseline: "go hello-world",
		Group:    "start",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "version")
		},
	},
	{
		Name: "gdb exec pass",
		Argv: func(env *Env, tg *Target) ([]string, error) { return gdbCall(env, tg, "pass"), nil },
	},
	{
		Name:     "pyglass exec -c pass",
		Baseline: "gdb exec pass",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "exec", fmt.Sprint(tg.PID), "-c", "pass")
		},
	},
	{
		Name: "gdb traceback",
		Argv: func(env *Env, tg *Target) ([]string, error) { return gdbCall(env, tg, tracebackCode), nil },
	},
	{
		Name:     "pyglass stacks",
		Baseline: "gdb traceback",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "stacks", fmt.Sprint(tg.PID))
		},
	},
	{
		// The same pause as stacks (thread states and frames), then the
		// analysis once the threads run: the heartbeat's stall compares.
		Name:     "pyglass locks",
		Baseline: "pyglass stacks",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "locks", fmt.Sprint(tg.PID))
		},
	},
	{
		// gdb's own Python-aware backtrace: needs the interpreter's debug
		// symbols and gdb extension (python3.11-dbg for Debian's build).
		Name: "gdb py-bt",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return append(append([]string(nil), env.HostGDB...), "-p", fmt.Sprint(tg.PID), "-batch", "-ex", "set confirm off", "-ex", "thread apply all py-bt"), nil
		},
		Applies: func(in testenv.Interp) bool { return strings.HasSuffix(in.Label, "-debian") },
	},
	{
		Name:     "pyglass stacks (vs py-bt)",
		Baseline: "gdb py-bt",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "stacks", fmt.Sprint(tg.PID))
		},
		Applies: func(in testenv.Interp) bool { return strings.HasSuffix(in.Label, "-debian") },
	},
	// Native frames: gdb's C backtrace of every thread (no Python
	// frames) against pyglass's merged C and Python stacks; the
	// heartbeat's stall is the pause the unwinding adds.
	{
		Name: "gdb thread apply all bt",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return append(append([]string(nil), env.GDB...), "-p", fmt.Sprint(tg.PID), "-batch", "-nx", "-ex", "set confirm off", "-ex", "thread apply all bt"), nil
		},
	},
	{
		Name:     "pyglass stacks --native",
		Baseline: "gdb thread apply all bt",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "stacks", fmt.Sprint(tg.PID), "--native")
		},
	},
	// Post-mortem: the same target's core (written once by pyglass dump,
	// outside the timing), read by gdb's py-bt (Debian's python3.11-dbg)
	// and by pyglass stacks --core.
	{
		Name: "gdb py-bt --core",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			core, err := benchCore(env, tg)
			if err != nil {
				return nil, err
			}
			return append(append([]string(nil), env.HostGDB...), "-batch", "-ex", "thread apply all py-bt", tg.Interp.Path, core), nil
		},
		Applies: func(in testenv.Interp) bool { return strings.HasSuffix(in.Label, "-debian") },
	},
	{
		Name:     "pyglass stacks --core",
		Baseline: "gdb py-bt --core",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			core, err := benchCore(env, tg)
			if err != nil {
				return nil, err
			}
			return pyglass(env, "stacks", "--core", core)
		},
	},
	{
		// CPython 3.15's own one-shot dump (PEP 799's sampling profiler,
		// "Tachyon"), read-only like pyglass stacks. It must be the
		// target's own interpreter, so it runs in the target's root.
		Name: "python -m profiling.sampling dump -a",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			// In the target's own mount namespace and root: it finds
			// the interpreter's sections through the paths the target
			// maps.
			return inRoot(tg, tg.Interp.Path, "-m", "profiling.sampling", "dump", "-a", fmt.Sprint(tg.PID)), nil
		},
		Applies: func(in testenv.Interp) bool { return in.AtLeast(3, 15) },
	},
	{
		Name:     "pyglass stacks (vs profiling.sampling)",
		Baseline: "python -m profiling.sampling dump -a",
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "stacks", fmt.Sprint(tg.PID))
		},
		Applies: func(in testenv.Interp) bool { return in.AtLeast(3, 15) },
	},
	// asyncio tasks: 1,000 of them on a loop in a thread. pyglass stacks
	// on the same target is the pause of a plain snapshot.
	{
		Name:   "pyglass stacks (1,000 tasks)",
		Group:  "tasks",
		Target: Tasks,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "stacks", fmt.Sprint(tg.PID))
		},
		Applies: func(in testenv.Interp) bool { return in.AtLeast(3, 7) },
	},
	{
		// CPython 3.14's own (read-only, same version as the target).
		Name:   "python -m asyncio ps (1,000 tasks)",
		Group:  "tasks",
		Target: Tasks,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return inRoot(tg, tg.Interp.Path, "-m", "asyncio", "ps", fmt.Sprint(tg.PID)), nil
		},
		Applies: func(in testenv.Interp) bool { return in.AtLeast(3, 14) },
	},
	{
		Name:     "pyglass tasks (1,000 tasks)",
		Baseline: "python -m asyncio ps (1,000 tasks)",
		Group:    "tasks",
		Target:   Tasks,
		Goal:     50 * time.Millisecond, // issue 14
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "tasks", fmt.Sprint(tg.PID))
		},
		Applies: func(in testenv.Interp) bool { return in.AtLeast(3, 7) },
	},
	// The leak reports on a 1-million-object heap: the GIL hold that
	// matters is theirs (gc.get_objects, gc.collect), not the attach.
	{
		// What people do today: str(gc.garbage) into a file, read by eye.
		Name:   "gdb gc.garbage to file (1M heap)",
		Group:  "leak",
		Target: Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return gdbCall(env, tg, gdbGarbageCode), nil
		},
	},
	{
		// An objgraph-style census: counts by type over gc.get_objects().
		Name:   "gdb census to file (1M heap)",
		Group:  "leak",
		Target: Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return gdbCall(env, tg, gdbCensusCode), nil
		},
	},
	{
		// The floor of the rows below: attaching and running nothing.
		Name:   "pyglass exec -c pass (1M heap)",
		Group:  "leak",
		Target: Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "exec", fmt.Sprint(tg.PID), "-c", "pass")
		},
	},
	{
		Name:     "pyglass objects (1M heap)",
		Baseline: "gdb census to file (1M heap)",
		Group:    "leak",
		Target:   Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "objects", fmt.Sprint(tg.PID), "--top", "10")
		},
	},
	{
		Name:     "pyglass garbage (1M heap)",
		Baseline: "gdb gc.garbage to file (1M heap)",
		Group:    "leak",
		Target:   Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "garbage", fmt.Sprint(tg.PID))
		},
	},
	{
		// One full collection with DEBUG_SAVEALL: the collector's own
		// pause, proportional to the heap.
		Name:   "pyglass garbage --saveall (1M heap)",
		Group:  "leak",
		Target: Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "garbage", fmt.Sprint(tg.PID), "--saveall")
		},
	},
	{
		// Who holds the Nodes, and what HEAP retains: the census walk,
		// then a search and two walks of the heap.
		Name:   "pyglass objects --paths Node (1M heap)",
		Group:  "leak",
		Target: Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "objects", fmt.Sprint(tg.PID), "--paths", "Node", "--limit", "1")
		},
	},
	{
		// Two censuses 10 s apart, then the holders of what grew.
		Name:   "pyglass objects --diff 10s --paths (1M heap)",
		Group:  "leak",
		Target: Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "objects", fmt.Sprint(tg.PID), "--diff", "10s", "--paths")
		},
	},
	// Which lines allocated the growth of a leaking service: memray
	// (attach through gdb, track 10 s, read its capture) against
	// pyglass's tracemalloc diff over the same 10 s, on the 1M heap with
	// a leak. memray is Debian sid's, for its python3.14: 3.14 targets in
	// the sid root only (scripts/sid-root.sh --bench installs it).
	{
		// The target's own stalls over the same 10 s (its collector
		// runs as the leak grows): the floor of the stall columns below.
		Name:    "nothing, 10 s (leaking 1M heap)",
		Group:   "memray",
		Target:  Leak,
		Argv:    func(*Env, *Target) ([]string, error) { return []string{"sleep", "10"}, nil },
		Applies: memrayApplies,
	},
	{
		Name:    "memray attach --duration 10 + stats (leaking 1M heap)",
		Group:   "memray",
		Target:  Leak,
		Argv:    memrayAttach,
		Applies: memrayApplies,
	},
	{
		Name:     "pyglass trace top --diff 10s (leaking 1M heap)",
		Baseline: "memray attach --duration 10 + stats (leaking 1M heap)",
		Group:    "memray",
		Target:   Leak,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "trace", "top", fmt.Sprint(tg.PID), "--diff", "10s", "--limit", "5")
		},
		Applies: memrayApplies,
	},
	{
		// Last: the first run starts tracemalloc, which stays on (the
		// heap, built before, is not traced; the walk is measured).
		Name:   "pyglass trace top (1M heap)",
		Group:  "leak",
		Target: Heap,
		Argv: func(env *Env, tg *Target) ([]string, error) {
			return pyglass(env, "trace", "top", fmt.Sprint(tg.PID))
		},
		Applies: func(in testenv.Interp) bool { return in.Major == 3 },
	},
}

// sidGDB returns the command prefix that runs the gdb installed in the sid
// root (scripts/sid-root.sh --gdb) against host processes: in a private
// mount namespace with /proc mounted in the root. gdb reads the target's
// files through its mount namespace, so no sysroot is needed.
func sidGDB(root string) []string {
	return []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t proc proc "$0/proc" && exec chroot "$0" /usr/bin/gdb "$@"`, root}
}

// memrayApplies: memray runs in the sid root, built for its python3.14.
func memrayApplies(in testenv.Interp) bool {
	return in.Chroot != "" && in.Major == 3 && in.Minor == 14
}

// memrayCapture is where memray writes its capture, as the sid root sees it.
const memrayCapture = "/tmp/pyglass-bench-memray.bin"

// memrayAttach: start tracking for 10 s (memray returns once its tracker
// runs in the target), wait for the target to end the capture, then
// print the allocation statistics (top locations by size and count).
func memrayAttach(env *Env, tg *Target) ([]string, error) {
	if _, err := os.Stat(filepath.Join(tg.Interp.Chroot, "usr/bin/memray")); err != nil {
		return nil, fmt.Errorf("no memray in %s (scripts/sid-root.sh --bench installs it)", tg.Interp.Chroot)
	}
	script := `rm -f "$0" && memray attach -f --duration 10 -o "$0" "$1" >/dev/null && sleep 10 &&
for i in $(seq 100); do memray stats "$0" 2>/dev/null && exit 0; sleep 0.1; done
memray stats "$0"`
	return inRoot(tg, "sh", "-c", script, memrayCapture, fmt.Sprint(tg.PID)), nil
}

// benchCores are the cores benchCore wrote, by target PID.
var benchCores = map[int]string{}

// benchCore returns a core of tg's process, written by pyglass dump the
// first time it is asked for (untimed: Argv runs before the clock starts).
func benchCore(env *Env, tg *Target) (string, error) {
	if c, ok := benchCores[tg.PID]; ok {
		return c, nil
	}
	// A fresh name: pyglass dump refuses to overwrite a file.
	f, err := os.CreateTemp("", "pyglass-bench-*.core")
	if err != nil {
		return "", err
	}
	f.Close()
	os.Remove(f.Name())
	argv, err := pyglass(env, "dump", fmt.Sprint(tg.PID), "-o", f.Name())
	if err != nil {
		return "", err
	}
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("pyglass dump: %v: %s", err, strings.TrimSpace(string(out)))
	}
	benchCores[tg.PID] = f.Name()
	return f.Name(), nil
}
