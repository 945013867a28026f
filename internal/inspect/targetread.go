package inspect

// The reads of a target.Target that Process and Core share: a live
// process (target/live's Snapshot, paused or not) and a core file
// (target/core) go through the same code, which touches no kernel
// interface (TestArchitectureTargetRead): what only a live process has
// (the pause, /proc) stays in its wrappers.

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// threadIndex is a target's threads, by our thread id (TID; for a core,
// the dumped one), with the map from the ids the target sees (NSTID, what
// CPython's native_thread_id holds) to ours, and those ids in the
// kernel's order.
type threadIndex struct {
	byTID  map[int]target.Thread
	toHost map[int]int
	nsTIDs []int
	tids   []int // our ids, in the same order
}

// indexThreads indexes t's threads. A core of another machine than this
// one has its threads' states dropped: the system call numbers are named
// by this machine's table.
func indexThreads(t target.Target) threadIndex {
	ths := t.Threads()
	ix := threadIndex{byTID: make(map[int]target.Thread, len(ths)), toHost: make(map[int]int, len(ths)), nsTIDs: make([]int, 0, len(ths))}
	native := t.Machine() == target.HostMachine()
	for _, th := range ths {
		if !native {
			th.State = target.State{}
		}
		ix.byTID[th.TID] = th
		ix.toHost[th.NSTID] = th.TID
		ix.nsTIDs = append(ix.nsTIDs, th.NSTID)
		ix.tids = append(ix.tids, th.TID)
	}
	return ix
}

// Info is what Process.Info says of a target that a core answers as well as
// a live process: its interpreter (py, which pyproc found in it) and its
// threads (ids, kernel names and states), with their Python names from
// names (by TID; nil: none). Process.Info adds what only a live process
// has; Core.Info counts the threads.
func Info(tgt target.Target, py *pyproc.Python, names map[int]string) (PythonInfo, []ThreadInfo) {
	pi := PythonInfo{Version: py.Version.String(), Path: py.Path, Shared: py.Shared}
	var out []ThreadInfo
	for _, t := range tgt.Threads() {
		ti := ThreadInfo{TID: t.TID, Comm: t.Name, State: kernelStateName(t.State), Name: names[t.TID]}
		if t.NSTID != t.TID {
			ti.NSTID = t.NSTID
		}
		out = append(out, ti)
	}
	return pi, out
}

// kernelStateName names a thread's kernel state as Info gives it: /proc's
// letter when known, else what the view says (a core's threads).
func kernelStateName(st target.State) string {
	switch c := st.Letter; c {
	case 0:
	case 'R':
		return "running"
	case 'S':
		return "sleeping"
	case 'D':
		return "disk sleep"
	case 'T':
		return "stopped"
	case 't':
		return "tracing stop"
	case 'Z':
		return "zombie"
	case 'X', 'x':
		return "dead"
	case 'I':
		return "idle"
	default:
		return string(c)
	}
	switch st.Kind {
	case target.Running:
		return "running"
	case target.Sleeping, target.InSyscall:
		return "sleeping"
	case target.Stopped:
		return "stopped"
	}
	return "unknown"
}

// StateGone is ThreadStack.State of a thread state whose thread the
// process does not have (a fork without Python's after-fork code).
const StateGone = "gone"

// stackRead is one read of the Python stacks of a target, live (paused
// or not) or a core: Process.Stacks and Core.Stacks are this read with
// what only a live process has around it (the pause, the names and waits
// read after it, the source lines).
type stackRead struct {
	tgt  target.Target
	m    *Memory
	opt  StackOptions
	what string            // names the target in errors: "process 42", "core of process 42"
	gone func(error) error // a live process that exited meanwhile: errs.NoProcess
	// retry: read without pausing, so a torn read is read again;
	// later: paused, so the thread names that could not be read and the
	// waits are read after the thaw (unnamed, waits).
	retry, later bool
	nv           *nativeView // the modules, when native frames are asked for (opt.Native)
	pages        pageSource  // where the page cache's pages come from (nil: the heap)

	dump    *StackDump
	rd      *pageCache // the cache that read the (paused) snapshot
	threads threadIndex
	idents  []uint64       // the Python thread idents of dump.Threads (same order)
	unnamed map[int]uint64 // interpreters (index → address) whose names could not be read
	// entering are the threads the paused read caught entering the
	// evaluation loop, to read again after the thaw.
	entering []laterStack
	waits    []lockSnap // per interpreter, for the waiting lines
	native   map[int]nativeStack
}

// read reads the interpreters, their threads and frames, and, when
// asked, the threads' native stacks (live: while the threads are held).
func (s *stackRead) read(ctx context.Context) error {
	m, opt, dump := s.m, s.opt, s.dump
	ix := indexThreads(s.tgt)
	s.threads = ix
	// (the thread list is read once, and again only when it changed
	// under a read without pausing: the same options each time)
	topt := cpython.ThreadOptions{Image: &m.img, TIDs: ix.nsTIDs, TaskOf: target.TaskOf(s.tgt.Machine(), s.tgt.Threads()), Machine: s.tgt.Machine()}
	// Every read goes through a page cache: one system call per page
	// touched instead of one per field, which keeps the pause short.
	rd := newPageCacheIn(m.r, s.pages)
	interps, err := cpython.FindInterpreters(rd, m.img, m.l)
	// Read without pausing, the thread list may be changing under us
	// (a thread starting or ending): look again, afresh.
	for try := 0; err != nil && s.retry && try < tornRetries; try++ {
		time.Sleep(time.Millisecond)
		rd = newPageCacheIn(m.r, s.pages)
		interps, err = cpython.FindInterpreters(rd, m.img, m.l)
	}
	if err != nil {
		return s.gone(&errs.Error{Kind: errs.NotPython, Msg: fmt.Sprintf("%s: cannot find the Python interpreter in memory", s.what), Err: err})
	}
	// The list starts with the newest interpreter; number them from the
	// main one (0), as the target does.
	for a, b := 0, len(interps)-1; a < b; a, b = a+1, b-1 {
		interps[a], interps[b] = interps[b], interps[a]
	}
	// Threads read paused without names, to name once the process runs:
	// their Python idents, by index in dump.Threads, and interpreters.
	s.idents = []uint64{}
	s.unnamed = map[int]uint64{}
	for i, interp := range interps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if TestHookWalk != nil {
			TestHookWalk()
		}
		threads, err := cpython.Threads(rd, m.l, interp, topt)
		// Without pausing, the list may be changing under the read.
		for try := 0; s.retry && err != nil && len(threads) == 0 && try < tornRetries; try++ {
			briefly(time.Duration(try) * 20 * time.Microsecond)
			rd = newPageCacheIn(m.r, s.pages)
			threads, err = cpython.Threads(rd, m.l, interp, topt)
		}
		if s.later && noNames(threads) {
			s.unnamed[i] = interp
		}
		if err != nil && len(threads) == 0 {
			dump.Threads = append(dump.Threads, ThreadStack{Interpreter: i, Error: err.Error(), Frames: []Frame{}})
			s.idents = append(s.idents, 0)
			continue
		}
		gilRange := cpython.GILRange(rd, m.img, m.l, interp)
		if s.later {
			s.waits = append(s.waits, lockSnap{interp: i, interpAddr: interp, threads: threads, gil: gilRange, kernel: ix.byTID, toHost: ix.toHost})
		}
		byTID := map[int]int{} // index in dump.Threads of this interpreter's threads
		for _, t := range threads {
			ts := ThreadStack{Name: t.Name, Main: t.Main, HoldsGIL: t.HoldsGIL, Interpreter: i, Frames: []Frame{}}
			if h, ok := ix.toHost[t.NativeID]; ok && t.NativeID != 0 {
				ts.TID = h // else 0: unknown, never an id that is not a task
			}
			if t.Gone {
				// Its frames point into a stack that may now be another
				// thread's: not read.
				ts.State = StateGone
				ts.Error = "no such thread in this process: a state left by a fork without Python's after-fork code (uwsgi without py-call-osafterfork)"
				s.idents = addThread(dump, byTID, s.idents, ts, t.ThreadID)
				continue
			}
			ts.Frames, ts.Error = readStack(rd, m, t, opt)
			// Without pausing, a thread that may run Python (it holds
			// the GIL or is on a CPU) may have changed its frames under
			// the read: read it again until two reads agree. The others
			// cannot change them (they wait for the GIL or sleep).
			inEval := t.InEval
			if s.retry && (ts.Error != "" || ts.HoldsGIL || ts.TID == 0 || ix.byTID[ts.TID].State.Kind == target.Running || entering(inEval, ts.Frames, ts.Error)) {
				ts.Frames, ts.Error, inEval = stableStack(m, interp, t.Addr, opt, ts.Frames, ts.Error, inEval)
			}
			ts.State = threadState(ix.byTID[ts.TID], ts.HoldsGIL, gilRange)
			n := len(dump.Threads)
			s.idents = addThread(dump, byTID, s.idents, ts, t.ThreadID)
			if len(dump.Threads) > n && entering(inEval, ts.Frames, ts.Error) {
				// The note stays unless readLater reads the stack.
				if ts.Error == "" {
					dump.Threads[n].Error = enteringNote
				}
				if s.later {
					s.entering = append(s.entering, laterStack{index: n, interp: interp, tstate: t.Addr})
				}
			}
		}
	}
	s.rd = rd
	if s.nv != nil {
		if opt.NativeAll {
			addOtherThreads(dump, ix.tids, func(tid int) (string, string) {
				th := ix.byTID[tid]
				return th.Name, threadState(th, false, [2]uint64{})
			})
		}
		s.native = s.nv.unwindAll(rd, s.tgt, dump)
	}
	return nil
}

// finish completes the dump once the target runs again: the native
// frames named and merged, the threads threading does not name named,
// the threads in order.
func (s *stackRead) finish() {
	if s.opt.Native {
		addNative(s.dump, s.nv, s.native, s.m.img.Major, s.opt.NativeAll)
	}
	nameUnnamed(s.dump, s.threads.byTID)
	sortThreads(s.dump)
}

// threadState describes a thread from the kernel's view: paused (or in
// a core), from its registers (the state the frames were read in); else
// from /proc.
func threadState(th target.Thread, holdsGIL bool, gil [2]uint64) string {
	switch st := th.State; st.Kind {
	case target.Running:
		return "running"
	case target.Stopped:
		return "stopped"
	case target.Sleeping:
		return "sleeping"
	case target.InSyscall:
		return syscallState(st.Syscall, st.Args[0], holdsGIL, gil)
	}
	return "unknown"
}

// TasksSupported says whether pyglass reads the asyncio tasks of Python
// v (3.7 to 3.15); what names the target.
func TasksSupported(v pyproc.Version, what string) error {
	if v.Major != 3 || v.Minor < 7 || v.Minor > 15 {
		return errs.Newf(errs.NotPython, "pyglass reads asyncio tasks of Python 3.7 to 3.15",
			"%s: Python %s: reading its asyncio tasks is not supported", what, v)
	}
	return nil
}

// maxAsyncioDebug bounds the .AsyncioDebug section read.
const maxAsyncioDebug = 4096

// AsyncioDebugOn reads the _asyncio module's .AsyncioDebug section
// (3.14+) of tgt, for Process.Tasks and Core.Tasks: from the
// interpreter's image py already has open when the module is built in,
// else from the first mapped file that may hold it (the image, an
// _asyncio*.so), opened through tgt.OpenFile. A target that has not
// loaded the module has no C task: nil, no error. what names the target
// in errors; mapsErr turns the error of listing its mappings into the
// one to return. Before 3.14 there is no section: nil, no error.
func AsyncioDebugOn(tgt target.Target, py *pyproc.Python, what string, mapsErr func(error) error) (*cpython.AsyncioDebug, error) {
	if v := py.Version; v.Major != 3 || v.Minor < 14 {
		return nil, nil
	}
	if b, err := py.SectionData(".AsyncioDebug", maxAsyncioDebug); err == nil && b != nil {
		return parseAsyncioDebug(b, what, py.Path)
	}
	return AsyncioDebugInFiles(tgt, py.Path, what, mapsErr)
}

// AsyncioDebugInFiles is AsyncioDebugOn's search of tgt's mapped files
// (image: the interpreter's path as the target sees it).
func AsyncioDebugInFiles(tgt target.Target, image, what string, mapsErr func(error) error) (*cpython.AsyncioDebug, error) {
	maps, err := tgt.Mappings()
	if err != nil {
		return nil, mapsErr(err)
	}
	seen := map[string]bool{}
	for _, m := range maps {
		if seen[m.Path] || !isAsyncioFile(m.TargetPath, m.Path, image) {
			continue
		}
		seen[m.Path] = true
		b, err := mappedSection(tgt, m.Path, ".AsyncioDebug")
		if err != nil || b == nil {
			continue
		}
		return parseAsyncioDebug(b, what, m.Path)
	}
	return nil, nil
}

func parseAsyncioDebug(b []byte, what, path string) (*cpython.AsyncioDebug, error) {
	d, err := cpython.ParseAsyncioDebug(b)
	if err != nil {
		return nil, &errs.Error{Kind: errs.NotPython, Msg: fmt.Sprintf("%s: %s", what, path), Err: err}
	}
	return d, nil
}

// isAsyncioFile reports whether a mapped file may hold the _asyncio
// module: the interpreter's image, or an _asyncio*.so.
func isAsyncioFile(targetPath, mapPath, image string) bool {
	base := path.Base(mapPath)
	return targetPath == image || strings.HasPrefix(base, "_asyncio.") && strings.HasSuffix(base, ".so")
}

// mappedSection returns the named section (at most maxAsyncioDebug
// bytes) of tgt's mapped file of path, nil when it has none.
func mappedSection(tgt target.Target, path, name string) ([]byte, error) {
	f, err := tgt.OpenFile(path)
	if err != nil {
		return nil, err
	}
	if c, ok := f.(io.Closer); ok {
		defer c.Close()
	}
	e, err := elfsym.Open(f)
	if err != nil {
		return nil, err
	}
	if _, ok := e.Section(name); !ok {
		return nil, nil
	}
	return e.SectionData(name, maxAsyncioDebug)
}

// tasksOn reads the asyncio tasks of tgt, for Process.Tasks and
// Core.Tasks: the interpreters' registries and tasks (readAsyncTasks,
// dbg the .AsyncioDebug section on 3.14+) through the reader snapshot
// gives read (a live process's paused read, a core's memory), then the
// thread each task runs on by the target's threads. snapshot returns
// the loops' clock at the snapshot (nil when unknown: no time left is
// given). gone turns an error into the process's exit when it is gone.
func tasksOn(ctx context.Context, tgt target.Target, m *Memory, py *pyproc.Python, dbg *cpython.AsyncioDebug, opt TaskOptions, gone func(error) error,
	snapshot func(read func(memory.Reader) error) (now func() float64, err error)) (*TaskDump, error) {
	dump := &TaskDump{PID: tgt.PID(), Python: PythonRef{Version: py.Version.String(), Path: py.Path}, Tasks: []AsyncTask{}, Cycles: [][]string{}}
	var all []cpython.AsyncTask
	var which []int
	var interps []uint64
	now, err := snapshot(func(rd memory.Reader) (err error) {
		all, which, interps, err = readAsyncTasks(ctx, rd, m, dbg, tgt.PID(), gone)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Thread state → thread id, as in StackDump (a thread state does
	// not move: read after the snapshot).
	ix := indexThreads(tgt)
	taskOf := target.TaskOf(tgt.Machine(), tgt.Threads())
	tidOf := map[uint64]int{}
	for _, interp := range interps {
		th, _ := cpython.Threads(m.r, m.l, interp, cpython.ThreadOptions{Image: &m.img, TIDs: ix.nsTIDs, TaskOf: taskOf, SkipNames: true, Machine: tgt.Machine()})
		for _, t := range th {
			tidOf[t.Addr] = t.NativeID
			if h, ok := ix.toHost[t.NativeID]; ok {
				tidOf[t.Addr] = h
			}
		}
	}
	fillTaskDump(dump, all, which, tidOf, opt.All, now)
	return dump, nil
}

// readLockSnap reads, from tgt (a live process's while its threads are
// held), the main interpreter's threads and their frames through a page
// cache (rd, which keeps the pages read): the snapshot analyseLocks
// works on, the threads mapped to tasks through tgt's. What the frames
// refer to is decoded from rd afterwards. what names the target in
// errors, gone turns an error into the process's exit when it is gone.
func readLockSnap(tgt target.Target, m *Memory, what string, gone func(error) error) (snap lockSnap, rd *pageCache, ix threadIndex, err error) {
	ix = indexThreads(tgt)
	rd = newPageCache(m.r)
	interps, err := cpython.FindInterpreters(rd, m.img, m.l)
	if err == nil && len(interps) == 0 {
		err = cpython.ErrNoInterpreter
	}
	if err != nil {
		return snap, nil, ix, gone(&errs.Error{Kind: errs.NotPython, Msg: fmt.Sprintf("%s: cannot find the Python interpreter in memory", what), Err: err})
	}
	interp := interps[len(interps)-1] // the list starts with the newest interpreter
	snap = lockSnap{interpAddr: interp, gil: cpython.GILRange(rd, m.img, m.l, interp), kernel: ix.byTID, toHost: ix.toHost}
	snap.threads, _ = cpython.Threads(rd, m.l, interp, cpython.ThreadOptions{Image: &m.img, TIDs: ix.nsTIDs, TaskOf: target.TaskOf(tgt.Machine(), tgt.Threads()), Machine: tgt.Machine()})
	snap.readFrames(rd, m)
	return snap, rd, ix, nil
}

// newLockReport is the report of process pid's analysed threads ts, each
// first completed by more (nil: nothing more), in thread id order, with
// the wait-for cycles and the verdict.
func newLockReport(pid int, ts []*lockThread, more func(*lockThread)) *LockReport {
	rep := &LockReport{PID: pid, Threads: []LockThread{}, Cycles: [][]int{}}
	for _, lt := range ts {
		if lt.unread {
			lt.out.WaitsFor.Evidence += "; " + enteringLocksNote
		}
		if more != nil {
			more(lt)
		}
		rep.Threads = append(rep.Threads, lt.out)
	}
	sort.SliceStable(rep.Threads, func(i, j int) bool { return rep.Threads[i].TID < rep.Threads[j].TID })
	rep.Cycles = waitCycles(rep.Threads)
	rep.Verdict = lockVerdict(rep)
	return rep
}
