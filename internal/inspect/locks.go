package inspect

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// Kinds of what a thread waits for (Wait.Kind).
const (
	WaitLock      = "lock"      // a Lock or RLock (WaitFor.Type says which)
	WaitJoin      = "join"      // Thread.join: another thread to end
	WaitCondition = "condition" // Condition.wait
	WaitEvent     = "event"     // Event.wait
	WaitQueue     = "queue"     // queue.Queue.get / put
	WaitSemaphore = "semaphore"
	WaitGIL       = "gil"     // the GIL
	WaitSyscall   = "syscall" // a system call (sleep, I/O)
	WaitChild     = "child"   // a child process to end (wait4: Popen.wait, os.waitpid)
	WaitIO        = "io"      // reading from or accepting on a file descriptor
	WaitNone      = "running" // not blocked
	WaitUnknown   = "unknown" // blocked, on something pyglass cannot name
)

// Kinds of verdicts (LockVerdict.Kind).
const (
	VerdictDeadlock = "deadlock"
	VerdictGIL      = "gil"     // threads wait for the GIL a thread keeps
	VerdictBlocked  = "blocked" // threads wait for locks others hold, no cycle
	VerdictIdle     = "idle"    // nothing waits for another thread
	VerdictRunning  = "running"
	VerdictUnknown  = "unknown" // threads wait for locks whose holder pyglass cannot tell
)

// LockReport is what Locks finds: who waits for what, who holds it.
type LockReport struct {
	PID     int          `json:"pid"`
	Verdict LockVerdict  `json:"verdict"`
	Threads []LockThread `json:"threads"`
	// Cycles lists every cycle of the wait-for graph (thread ids).
	Cycles [][]int `json:"cycles"`
	// Core describes the core file read, nil for a live process.
	Core *CoreInfo `json:"core,omitempty"`
}

// LockVerdict is the one-line answer.
type LockVerdict struct {
	Kind    string `json:"kind"`
	Summary string `json:"summary"`
}

// LockThread is one thread of a LockReport.
type LockThread struct {
	TID      int     `json:"tid"`
	Name     string  `json:"name"`
	State    string  `json:"state"`
	WaitsFor WaitFor `json:"waits_for"`
	// Native, for the thread keeping the GIL in C code, is the C
	// functions it is in, innermost first, down to the interpreter's
	// evaluation loop ("function (file)", "file+0x..." when unnamed).
	Native []string `json:"native,omitempty"`
}

// WaitFor is what a thread waits for.
type WaitFor struct {
	Kind string `json:"kind"`
	// Object is the address of the object waited on ("0x7f..."; for a
	// child process its pid), "" when unknown; Type its Python type
	// ("process" for a child process).
	Object string `json:"object,omitempty"`
	Type   string `json:"type,omitempty"`
	// Where names the object in the waiting frame: "self._a in
	// Cache.put, cache.py:41".
	Where string `json:"where,omitempty"`
	// HolderTID is the thread holding it (for a join: the thread being
	// joined), 0 when none or unknown; HolderInferred when read from
	// other threads' frames rather than from the object.
	HolderTID      int    `json:"holder_tid,omitempty"`
	HolderInferred bool   `json:"holder_inferred,omitempty"`
	Evidence       string `json:"evidence,omitempty"`
	// SinceSeconds is how long the blocked thread had not run when
	// pyglass paused it (the kernel scheduler's last run of it, read
	// before the pause): it has waited since then, unless something woke
	// it in between (a debugger's pause, pyglass's own, counts). Nil when
	// unknown (no /proc/PID/task/TID/sched) or not blocked.
	SinceSeconds *float64 `json:"since_seconds,omitempty"`
}

// TestHookLocks, when set (tests), is called while the threads are
// paused, before the analysis.
var TestHookLocks func()

// TestHookLocksThawed, when set (tests), is called when Locks's first
// pause has ended, before the frames of the threads it caught entering
// the evaluation loop are read again.
var TestHookLocksThawed func()

// lockThread is the analysis state of one thread.
type lockThread struct {
	out    LockThread
	ident  uint64 // threading.get_ident()
	frames []cpython.Frame
	// refs holds, per frame (innermost first), the objects it refers
	// to, nil until first asked for (lockWalk.refsOf): most reports need
	// those of a few frames only, and reading them all (the type of every
	// local and value-stack slot, of every frame of every thread) was
	// about a tenth of what stacks cost on a 12-thread target.
	refs [][]cpython.FrameRef
	// refReader reads refs when the frames were read in a later pause
	// than the others (lockSnap.readers); nil: lockWalk.refReader.
	refReader *cpython.RefReader
	// unread: caught entering the evaluation loop, its frames not read.
	unread bool
	waitOn uint64 // the lock object waited on
	sysArg uint64 // the first argument of the system call it waits in
	fds    []int  // the file descriptors it waits on (read, select, poll)
	epoll  bool   // fds[0] is an epoll instance: it waits on what that watches
	gil    bool
}

// Locks is Process.Locks on the live process p, its memory open as m.
func Locks(ctx context.Context, p *Live, m *Memory) (*LockReport, error) {
	tgt := p.Snapshot(m.r, false)
	// Before the pause, which makes every thread run a moment.
	tids := make([]int, 0, len(tgt.Threads()))
	for _, th := range tgt.Threads() {
		tids = append(tids, th.TID)
	}
	ran := procfs.New(p.PID).SinceRan(tids)
	// The modules, for the C functions of a thread keeping the GIL,
	// are listed before the pause, to keep it short.
	nv, nerr := p.liveNativeView(tgt)
	if nerr == nil {
		defer nv.close()
	}
	frozen, err := p.Freeze()
	if err != nil {
		return nil, err
	}
	defer frozen.Thaw()
	tgt.Hold(frozen)
	snap, rd, ix, err := readLockSnap(tgt, m, fmt.Sprintf("process %d", p.PID), p.Gone)
	if err != nil {
		return nil, err
	}
	// The GIL holder's C stack, unwound while paused (named after).
	var gilNative nativeStack
	gilTID := 0
	if nv != nil {
		for _, t := range snap.threads {
			if h, ok := ix.toHost[t.NativeID]; ok && t.HoldsGIL && t.NativeID != 0 {
				if words, ok := tgt.Registers(h); ok {
					gilNative, gilTID = nv.unwindThread(rd, words), h
				}
			}
		}
	}
	if TestHookLocks != nil {
		TestHookLocks()
	}
	frozen.Thaw()
	if TestHookLocksThawed != nil {
		TestHookLocksThawed()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.relinkFrames(m, &snap)
	rep := newLockReport(p.PID, p.analyseLocks(rd, m, snap), func(lt *lockThread) {
		if d, ok := ran[lt.out.TID]; ok && lt.out.TID != 0 && lt.out.WaitsFor.Kind != WaitNone {
			s := d.Seconds()
			lt.out.WaitsFor.SinceSeconds = &s
		}
		if lt.out.TID == gilTID && gilTID != 0 && lt.out.WaitsFor.Kind != WaitNone {
			lt.out.Native = cFunctions(nv.name(gilNative), p.Py.Version.Major)
		}
	})
	return rep, nil
}

// maxCFunctions bounds LockThread.Native.
const maxCFunctions = 16

// cFunctions lists the native frames of a thread (outermost first, as
// nativeView.name gives them) innermost first, down to the evaluation
// loop that called into C.
func cFunctions(frames []Frame, major int) []string {
	var out []string
	for i := len(frames) - 1; i >= 0 && len(out) < maxCFunctions; i-- {
		f := frames[i]
		if isEvalFrame(f.Function, major) {
			break
		}
		file := path.Base(f.File)
		switch {
		case f.Function != "":
			out = append(out, fmt.Sprintf("%s (%s)", f.Function, file))
		default:
			out = append(out, fmt.Sprintf("%s+%#x", file, f.Offset))
		}
	}
	return out
}

// lockSnap is what Locks reads of one interpreter while the threads are
// paused: its threads, their frames (outermost first; nil when not read),
// the GIL's futex range, and the kernel's view of the tasks.
type lockSnap struct {
	interp     int    // its index in StackDump (0: the main interpreter)
	interpAddr uint64 // its PyInterpreterState's address
	threads    []cpython.Thread
	frames     [][]cpython.Frame
	// entering lists (indices in threads) the threads caught entering
	// the evaluation loop (see enteringLoop): no frames, or cut short.
	entering []int
	// readers holds, per thread, the page cache of the later pause that
	// read its frames (relinkFrames); nil: the first pause's.
	readers []memory.Reader
	gil     [2]uint64
	kernel  map[int]target.Thread // by our thread id
	toHost  map[int]int
}

// readFrames reads the frames of snap's threads through rd (outermost
// first; nil for an idle thread or a state of no thread, whose frames
// are garbage; those read before an error when one stops the read), and
// lists those caught entering the evaluation loop.
func (snap *lockSnap) readFrames(rd memory.Reader, m *Memory) {
	snap.frames = make([][]cpython.Frame, len(snap.threads))
	snap.readers = make([]memory.Reader, len(snap.threads))
	snap.entering = snap.entering[:0]
	for k, t := range snap.threads {
		if t.Gone {
			continue
		}
		var err error
		if t.Frame != 0 {
			snap.frames[k], err = cpython.Frames(rd, m.l, t.Frame, cpython.FrameOptions{})
		}
		if enteringLoop(t.InEval, snap.frames[k], err) {
			snap.entering = append(snap.entering, k)
		}
	}
}

// enteringLoop is entering for a read of cpython.Frames: a stack deeper
// than it reads is whole enough, not caught entering.
func enteringLoop(inEval bool, frames []cpython.Frame, err error) bool {
	errText := ""
	if err != nil && !errors.Is(err, cpython.ErrTooDeep) {
		errText = err.Error()
	}
	return entering(inEval, frames, errText)
}

// enteringLocksNote ends, in a lock report, the evidence of a thread
// whose frames could not be read (lockThread.unread).
const enteringLocksNote = "its frames not read (caught entering the evaluation loop): the locks it holds are unknown"

// relinkFrames reads again, in a second short pause a millisecond after
// the first (and a third, if needed), the frames of the threads the
// first caught entering the evaluation loop (snap.entering): a moment
// later their frame is linked. Their kernel state (the system call they
// are in, the GIL) stays the first pause's; their frames are the later
// pause's, and the objects those refer to, which say which locks the
// thread holds, are read with that pause's page cache (snap.readers).
// Such a thread is running Python, not waiting, in the first pause.
// snap.entering keeps the threads whose frames were not read again:
// still entering, or their state now another thread's; they keep the
// first read's frames, if any.
func (p *Live) relinkFrames(m *Memory, snap *lockSnap) {
	if len(snap.entering) == 0 {
		return
	}
	todo := slices.Clone(snap.entering)
	var unread []int
	p.inLaterPauses(m, func(rd *pageCache) bool {
		still := todo[:0]
		for _, k := range todo {
			old := snap.threads[k]
			t := cpython.ReadThread(rd, m.l, snap.interpAddr, old.Addr)
			switch {
			case t.ThreadID != old.ThreadID:
				unread = append(unread, k) // the state is now another thread's, or freed
				continue
			case t.Frame == 0 && !t.InEval:
				snap.frames[k] = nil
				continue // out of the loop: no frames to read
			}
			f, err := cpython.Frames(rd, m.l, t.Frame, cpython.FrameOptions{})
			if enteringLoop(t.InEval, f, err) {
				still = append(still, k)
				continue
			}
			snap.frames[k], snap.readers[k] = f, rd
		}
		todo = still
		return len(todo) > 0
	})
	snap.entering = append(unread, todo...)
}

// analyseLocks says what each thread of snap waits for and who holds it,
// reading the objects its frames refer to through rd (the page cache
// that read snap: the frames' pages are the paused ones). p names the
// child processes and descriptors waited on; nil (a core), they are not
// named.
func (p *Live) analyseLocks(rd memory.Reader, m *Memory, snap lockSnap) []*lockThread {
	var ts []*lockThread
	for k, t := range snap.threads {
		lt := &lockThread{ident: t.ThreadID, gil: t.HoldsGIL}
		if h, ok := snap.toHost[t.NativeID]; ok && t.NativeID != 0 {
			lt.out.TID = h
		}
		lt.out.Name = t.Name
		tv := snap.kernel[lt.out.TID]
		lt.out.State = threadState(tv, t.HoldsGIL, snap.gil)
		fr := snap.frames[k]
		for i := len(fr) - 1; i >= 0; i-- { // innermost first
			lt.frames = append(lt.frames, fr[i])
		}
		lt.refs = make([][]cpython.FrameRef, len(lt.frames))
		if r := snap.readers[k]; r != nil {
			lt.refReader = cpython.NewRefReader(r, m.l)
		}
		lt.unread = len(fr) == 0 && slices.Contains(snap.entering, k)
		if lt.out.TID != 0 && len(lt.frames) == 0 && lt.out.Name == "" && t.ThreadID == 0 {
			continue
		}
		ts = append(ts, lt)
	}
	if TestHookLockThreads != nil {
		defer func() {
			frames, read := 0, 0
			for _, lt := range ts {
				frames += len(lt.frames)
				for _, r := range lt.refs {
					if r != nil {
						read++
					}
				}
			}
			TestHookLockThreads(len(ts), frames, read)
		}()
	}
	lw := &lockWalk{r: rd, m: m, threads: ts, refReader: cpython.NewRefReader(rd, m.l)}
	for _, lt := range ts {
		lw.qualify(lt)
	}
	for _, lt := range ts {
		if st := snap.kernel[lt.out.TID].State; st.Frozen {
			lw.waitFor(lt, st.Syscall, st.Args, snap.gil)
		} else {
			lt.out.WaitsFor = WaitFor{Kind: WaitUnknown, Evidence: "the thread could not be paused"}
		}
	}
	lw.holders()
	lw.gilHolder()
	nameUnnamedLocks(ts, snap.kernel)
	var peers *procfs.FDIndex  // who holds the other ends: one scan of /proc for all
	var nets *procfs.NetTables // the socket tables, read once
	for _, lt := range ts {
		if p == nil {
			continue
		}
		switch lt.out.WaitsFor.Kind {
		case WaitChild:
			p.describeChild(&lt.out.WaitsFor, lt.sysArg)
		case WaitIO:
			fds := lt.fds
			if lt.epoll && len(fds) == 1 {
				// What the epoll instance watches, from its fdinfo.
				fds, _ = procfs.New(p.PID).EpollFDs(fds[0])
				fds = fds[:min(len(fds), maxWaitFDs)]
				lt.out.WaitsFor.Evidence += fmt.Sprintf(" on epoll fd %d", lt.fds[0])
			}
			if peers == nil {
				peers, nets = p.peerIndex(), procfs.New(p.PID).NetTables()
			}
			p.describeFDs(&lt.out.WaitsFor, fds, peers, nets)
		}
	}
	return ts
}

// addWaits gives each blocked thread of dump what it waits for, from
// the analysis of Locks over what Stacks read paused (waits, one per
// interpreter); the frames are decoded again from rd, the page cache
// that read them paused.
func (p *Live) addWaits(rd memory.Reader, m *Memory, dump *StackDump, waits []lockSnap) {
	for _, snap := range waits {
		snap.readFrames(rd, m)
		for _, lt := range p.analyseLocks(rd, m, snap) {
			if lt.out.TID == 0 || lt.out.WaitsFor.Kind == WaitNone {
				continue
			}
			for i := range dump.Threads {
				if t := &dump.Threads[i]; t.TID == lt.out.TID && t.Interpreter == snap.interp && t.WaitingFor == nil {
					wf := lt.out.WaitsFor
					t.WaitingFor = &wf
				}
			}
		}
	}
}

// Line says in one line what w is: "waiting for RLock 0x7f.. (self._a in
// Cache.put, cache.py:41) held by thread 13", else "waiting: " and its
// evidence ("waiting: sleeping (time.sleep), in clock_nanosleep").
func (w WaitFor) Line() string {
	switch w.Kind {
	case WaitLock, WaitJoin, WaitCondition, WaitEvent, WaitQueue, WaitSemaphore:
	default:
		return "waiting: " + w.Evidence
	}
	s := "waiting for " + waitObject(w)
	if w.HolderTID != 0 {
		by := " held"
		if w.Kind == WaitJoin {
			by = ", run"
		}
		if w.HolderInferred {
			by += " (inferred)"
		}
		s += fmt.Sprintf("%s by thread %d", by, w.HolderTID)
	}
	return s
}

func nameUnnamedLocks(ts []*lockThread, kernel map[int]target.Thread) {
	for _, lt := range ts {
		if lt.out.Name == "" && lt.out.TID != 0 {
			lt.out.Name = kernel[lt.out.TID].Name
		}
	}
}

// TestHookLockThreads, when set (tests), is given, once each lock
// analysis is done, how many threads it looked at, their frames, and
// the frames whose references it read.
var TestHookLockThreads func(threads, frames, refsRead int)

// lockWalk holds what the analysis of one interpreter needs.
type lockWalk struct {
	r         memory.Reader
	m         *Memory
	threads   []*lockThread
	refReader *cpython.RefReader
}

// refsOf returns the objects frame i of lt refers to, read once.
func (w *lockWalk) refsOf(lt *lockThread, i int) []cpython.FrameRef {
	if i < 0 || i >= len(lt.refs) {
		return nil
	}
	rr := w.refReader
	if lt.refReader != nil {
		rr = lt.refReader
	}
	if lt.refs[i] == nil && rr != nil {
		refs, _ := rr.Refs(lt.frames[i])
		if refs == nil {
			refs = []cpython.FrameRef{} // read: none
		}
		lt.refs[i] = refs
	}
	return lt.refs[i]
}

// where names frame f's position: "Function, file.py:41".
func where(f cpython.Frame) string {
	return fmt.Sprintf("%s, %s:%d", f.Function, path.Base(f.File), f.Line)
}

// qualify gives the frames of methods their class's name before 3.11
// (co_name has none): the type of their local self, "Cache.put".
func (w *lockWalk) qualify(lt *lockThread) {
	if l := w.m.l; l.Major == 3 && l.Minor >= 11 {
		return // co_qualname names the class already
	}
	for i := range lt.frames {
		f := &lt.frames[i]
		if strings.Contains(f.Function, ".") {
			continue
		}
		if self := w.selfOf(lt, i); self != 0 {
			if t, err := cpython.ClassName(w.r, w.m.l, self); err == nil {
				f.Function = t[strings.LastIndexByte(t, '.')+1:] + "." + f.Function
			}
		}
	}
}

// frameIs reports whether f runs function fn (a qualified name on 3.11+,
// its last part before) of a file named file (without .py).
func frameIs(f cpython.Frame, file string, fns ...string) bool {
	if strings.TrimSuffix(path.Base(f.File), ".py") != file {
		return false
	}
	for _, fn := range fns {
		if f.Function == fn {
			return true
		}
	}
	return false
}

// selfOf returns the local "self" of frame i of lt, 0 when absent.
func (w *lockWalk) selfOf(lt *lockThread, i int) uint64 {
	for _, r := range w.refsOf(lt, i) {
		if r.Via == cpython.ViaLocal && r.Name == "self" {
			return r.Obj
		}
	}
	return 0
}

// maxLibFrames bounds how far below the innermost frame threading's and
// queue's own frames are looked for.
const maxLibFrames = 4

// waitFor fills lt.out.WaitsFor from its frames and the system call it
// was paused in (nr < 0: not in a system call).
func (w *lockWalk) waitFor(lt *lockThread, nr int64, args [6]uint64, gil [2]uint64) {
	arg0 := args[0]
	wf := &lt.out.WaitsFor
	if nr < 0 {
		*wf = WaitFor{Kind: WaitNone, Evidence: "running"}
		if lt.gil {
			wf.Evidence = "running, holds the GIL"
		}
		return
	}
	if nr == sysFutex() && gil[1] != 0 && arg0 >= gil[0] && arg0 < gil[1] && !lt.gil {
		*wf = WaitFor{Kind: WaitGIL, Evidence: "futex on the GIL"}
		return
	}
	// threading's and queue's own frames say what the thread waits for:
	// the highest-level call first (Thread.join, Queue.get and
	// Event.wait call Condition.wait).
	for i := 0; i < len(lt.frames) && i < maxLibFrames; i++ {
		f := lt.frames[i]
		switch {
		case nr == sysFutex() && isBootstrap(f.File) && f.Function == "_ModuleLock.acquire":
			w.moduleLock(lt, i)
			return
		case frameIs(f, "threading", "Thread.join", "Thread._wait_for_tstate_lock"):
			w.join(lt, i)
			return
		case frameIs(f, "queue", "Queue.get", "Queue.put") || frameIs(f, "Queue", "Queue.get", "Queue.put"):
			*wf = WaitFor{Kind: WaitQueue, Where: where(f), Evidence: "queue.Queue.get on an empty queue"}
			if strings.HasSuffix(f.Function, "put") {
				wf.Evidence = "queue.Queue.put on a full queue"
			}
			if n, ok := w.queueLen(w.selfOf(lt, i)); ok {
				wf.Evidence += fmt.Sprintf(" (%d items)", n)
			}
			if i+1 < len(lt.frames) {
				wf.Where = where(lt.frames[i+1])
			}
			w.object(wf, w.selfOf(lt, i))
			return
		case frameIs(f, "threading", "Event.wait", "_Event.wait"):
			*wf = WaitFor{Kind: WaitEvent, Where: where(f), Evidence: "Event.wait: waits for another thread to set it"}
			if i+1 < len(lt.frames) {
				wf.Where = where(lt.frames[i+1])
			}
			w.object(wf, w.selfOf(lt, i))
			return
		case frameIs(f, "threading", "Semaphore.acquire", "_Semaphore.acquire", "BoundedSemaphore.acquire", "_BoundedSemaphore.acquire"):
			*wf = WaitFor{Kind: WaitSemaphore, Where: where(f), Evidence: "Semaphore.acquire: waits for a release"}
			if i+1 < len(lt.frames) {
				wf.Where = where(lt.frames[i+1])
			}
			w.object(wf, w.selfOf(lt, i))
			return
		}
	}
	for i := 0; i < len(lt.frames) && i < maxLibFrames; i++ {
		if f := lt.frames[i]; frameIs(f, "threading", "Condition.wait", "_Condition.wait", "Condition.wait_for", "_Condition.wait_for") {
			*wf = WaitFor{Kind: WaitCondition, Where: where(f), Evidence: "Condition.wait: waits for a notify"}
			if i+1 < len(lt.frames) {
				wf.Where = where(lt.frames[i+1])
			}
			w.object(wf, w.selfOf(lt, i))
			return
		}
	}
	if nr == sysFutex() {
		if w.importLock(lt, arg0) {
			return
		}
		w.lock(lt, arg0)
		return
	}
	name := target.SyscallName(target.HostMachine(), nr)
	if name == "" {
		name = fmt.Sprintf("syscall %d", nr)
	}
	lt.sysArg = arg0
	*wf = WaitFor{Kind: WaitSyscall, Evidence: "in " + name}
	if len(lt.frames) > 0 {
		wf.Where = where(lt.frames[0])
	}
	switch {
	case name == "clock_nanosleep" || name == "nanosleep" || (name == "select" || name == "pselect6") && arg0 == 0:
		wf.Evidence = "sleeping (time.sleep), in " + name
	case name == "restart_syscall":
		// What the kernel resumes after a stop (a debugger's pause,
		// pyglass's own) interrupted a call with a timeout.
		wf.Evidence = "in a sleep or timed wait resumed after a pause (restart_syscall)"
	case name == "read" || name == "readv" || name == "recvfrom" || name == "recvmsg" || name == "accept" || name == "accept4":
		wf.Kind = WaitIO
		lt.fds = []int{int(int32(uint32(arg0)))}
	case name == "select" || name == "pselect6":
		wf.Kind = WaitIO
		lt.fds = selectFDs(w.r, arg0, args[1], args[2])
	case name == "poll" || name == "ppoll":
		wf.Kind = WaitIO
		lt.fds = pollFDs(w.r, args[0], args[1])
	case strings.HasPrefix(name, "epoll_wait") || strings.HasPrefix(name, "epoll_pwait"):
		wf.Kind = WaitIO
		lt.fds, lt.epoll = []int{int(int32(uint32(arg0)))}, true
	case name == "wait4" || name == "waitid":
		wf.Kind = WaitChild
		wf.Evidence = "waiting for a child process, in " + name
		for _, f := range lt.frames { // the caller of subprocess's frames
			if path.Base(f.File) != "subprocess.py" {
				wf.Where = where(f)
				break
			}
		}
	}
}

// isBootstrap reports whether file is importlib's _bootstrap module
// (frozen, or its source with -X frozen_modules=off).
func isBootstrap(file string) bool {
	return file == "<frozen importlib._bootstrap>" || strings.HasSuffix(file, "/importlib/_bootstrap.py")
}

// moduleLock fills the wait of a thread in importlib's
// _ModuleLock.acquire (frame i, 3.x): the lock of one module, whose
// owner (a thread ident) and name are in the object.
func (w *lockWalk) moduleLock(lt *lockThread, i int) {
	wf := &lt.out.WaitsFor
	self := w.selfOf(lt, i)
	*wf = WaitFor{Kind: WaitLock, Type: "_ModuleLock", Where: where(lt.frames[i]), Evidence: "importlib's module lock"}
	w.object(wf, self)
	lt.waitOn = self
	module := ""
	if n, err := cpython.InstanceAttr(w.r, w.m.l, self, "name"); err == nil {
		module, _ = cpython.String(w.r, w.m.l, n, 200)
	}
	// Where: the frame that imports, the first one outside importlib.
	for j := i + 1; j < len(lt.frames); j++ {
		if !isBootstrap(lt.frames[j].File) {
			wf.Where = "import " + module + " in " + where(lt.frames[j])
			break
		}
	}
	if module != "" {
		wf.Evidence = fmt.Sprintf("importlib's module lock of %q", module)
	}
	owner, err := cpython.InstanceAttr(w.r, w.m.l, self, "owner")
	if err != nil {
		return
	}
	id, err := cpython.Int(w.r, w.m.l, owner)
	if err != nil || !id.IsUint64() {
		return
	}
	w.ownedBy(wf, id.Uint64(), lt)
}

// ownedBy makes the thread whose ident is owner (other than lt) the
// holder of what wf waits for, as the object records it.
func (w *lockWalk) ownedBy(wf *WaitFor, owner uint64, lt *lockThread) {
	if owner == 0 {
		return
	}
	for _, o := range w.threads {
		if o.ident == owner && o != lt {
			wf.HolderTID = o.out.TID
			wf.Evidence += fmt.Sprintf("; its owner is thread %d", o.out.TID)
			return
		}
	}
	wf.Evidence += fmt.Sprintf("; its owner %#x is no other thread of the process", owner)
}

// importLock fills the wait of a thread of 2.7 asleep on the global
// import lock (Python/import.c's import_lock, a sem_t*), whose owner is
// import_lock_thread; false when the futex is elsewhere.
func (w *lockWalk) importLock(lt *lockThread, futex uint64) bool {
	if w.m.l.Major >= 3 {
		return false
	}
	a, ok := w.m.img.Symbol("import_lock")
	if !ok {
		return false
	}
	sem, err := memory.NonNullPtr(w.r, a)
	if err != nil || futex < sem || futex >= sem+32 { // a sem_t
		return false
	}
	wf := &lt.out.WaitsFor
	*wf = WaitFor{Kind: WaitLock, Object: fmt.Sprintf("%#x", sem), Type: "import lock", Evidence: "the global import lock"}
	if len(lt.frames) > 0 {
		wf.Where = "import in " + where(lt.frames[0])
	}
	if t, ok := w.m.img.Symbol("import_lock_thread"); ok {
		if owner, err := memory.Ptr(w.r, t); err == nil && owner != ^uint64(0) {
			w.ownedBy(wf, owner, lt)
		}
	}
	return true
}

// object fills Object and Type of wf from the object at obj.
func (w *lockWalk) object(wf *WaitFor, obj uint64) {
	if obj == 0 {
		return
	}
	wf.Object = fmt.Sprintf("%#x", obj)
	if t, err := cpython.ClassName(w.r, w.m.l, obj); err == nil {
		wf.Type = t
	}
}

// join fills the wait of a thread in Thread.join (frame i): the thread
// joined is its self, whose ident names it.
func (w *lockWalk) join(lt *lockThread, i int) {
	wf := &lt.out.WaitsFor
	f := lt.frames[i]
	// The outermost of join/_wait_for_tstate_lock is where the user called.
	for j := i + 1; j < len(lt.frames) && j < maxLibFrames; j++ {
		if frameIs(lt.frames[j], "threading", "Thread.join") {
			i, f = j, lt.frames[j]
		}
	}
	*wf = WaitFor{Kind: WaitJoin, Evidence: "Thread.join: waits for the thread to end"}
	if i+1 < len(lt.frames) {
		wf.Where = where(lt.frames[i+1])
	} else {
		wf.Where = where(f)
	}
	self := w.selfOf(lt, i)
	w.object(wf, self)
	if self == 0 {
		return
	}
	prefix := "_"
	if w.m.l.Major < 3 {
		prefix = "_Thread__"
	}
	idObj, err := cpython.AttrGet(w.r, w.m.l, self, prefix+"ident")
	if err != nil {
		return
	}
	id, err := cpython.Int(w.r, w.m.l, idObj)
	if err != nil || !id.IsUint64() {
		return
	}
	for _, o := range w.threads {
		if o.ident == id.Uint64() && o != lt {
			wf.HolderTID = o.out.TID
			wf.Evidence = fmt.Sprintf("Thread.join on thread %d %q, still running", o.out.TID, o.out.Name)
		}
	}
}

// lock fills the wait of a thread asleep in a futex outside threading's
// frames: the lock it acquires is the one whose semaphore the futex is
// in (2.7–3.13), or whose PyMutex it parked on (3.14+), among the
// objects its innermost frame refers to.
func (w *lockWalk) lock(lt *lockThread, futex uint64) {
	wf := &lt.out.WaitsFor
	*wf = WaitFor{Kind: WaitUnknown, Evidence: fmt.Sprintf("futex %#x, on no lock its innermost frame refers to", futex)}
	if len(lt.frames) == 0 {
		wf.Evidence = "futex, no Python frame"
		if lt.unread {
			wf.Evidence = "futex" // and enteringLocksNote
		}
		return
	}
	wf.Where = where(lt.frames[0])
	parked, isParked := cpython.ParkedAt(w.r, w.m.l, futex)
	for _, ref := range w.refsOf(lt, 0) {
		s, err := cpython.ReadSync(w.r, w.m.l, ref.Obj)
		if err != nil || (s.Kind != cpython.SyncLock && s.Kind != cpython.SyncRLock) {
			continue
		}
		hit := s.Futex[1] != 0 && futex >= s.Futex[0] && futex < s.Futex[1] ||
			isParked && s.ParkAddr != 0 && parked == s.ParkAddr
		if !hit {
			continue
		}
		lt.waitOn = s.Addr
		fi := 0 // the frame that names the lock: the caller of threading's
		if frameIs(lt.frames[0], "threading", "_RLock.acquire", "_RLock.__enter__") && len(lt.frames) > 1 {
			fi = 1
		}
		*wf = WaitFor{Kind: WaitLock, Object: fmt.Sprintf("%#x", s.Addr), Type: s.Type, Where: w.name(lt, fi, ref) + " in " + where(lt.frames[fi])}
		if isParked {
			wf.Evidence = "parked on the lock's mutex"
		} else {
			wf.Evidence = "futex in the lock's semaphore"
		}
		if s.Kind == cpython.SyncRLock {
			wf.Type = "RLock"
			w.ownedBy(wf, s.Owner, lt)
		} else {
			wf.Type = "Lock"
		}
		return
	}
}

// name says how frame fi of lt names the object of ref: its local's
// name, or an attribute of self ("self._a"), else "a value on the stack"
// (an expression's value, such as locks[i]).
func (w *lockWalk) name(lt *lockThread, fi int, ref cpython.FrameRef) string {
	if ref.Via == cpython.ViaLocal && fi == 0 {
		return ref.Name
	}
	for _, r := range w.refsOf(lt, fi) {
		if r.Via == cpython.ViaLocal && r.Obj == ref.Obj {
			return r.Name
		}
	}
	if self := w.selfOf(lt, fi); self != 0 {
		if a := cpython.AttrNameOf(w.r, w.m.l, self, ref.Obj); a != "" {
			return "self." + a
		}
	}
	return "a value on the stack"
}

// refStrength ranks how strongly a reference says its thread holds a
// lock: a with block on it, else a local or a bound method.
func refStrength(via string) int {
	switch via {
	case cpython.ViaExit:
		return 2
	case cpython.ViaLocal, cpython.ViaMethod:
		return 1
	}
	return 0
}

// countThreads is "1 thread waits" or "3 threads wait".
func countThreads(n int, one, many string) string {
	if n == 1 {
		return "1 thread " + one
	}
	return fmt.Sprintf("%d threads %s", n, many)
}

// gilHolder makes the thread holding the GIL the holder of what the
// threads waiting for it wait for.
func (w *lockWalk) gilHolder() {
	for _, h := range w.threads {
		if !h.gil {
			continue
		}
		if !strings.Contains(h.out.WaitsFor.Evidence, "holds the GIL") {
			h.out.WaitsFor.Evidence += "; holds the GIL"
		}
		for _, lt := range w.threads {
			if lt != h && lt.out.WaitsFor.Kind == WaitGIL {
				lt.out.WaitsFor.HolderTID = h.out.TID
				lt.out.WaitsFor.Evidence = fmt.Sprintf("futex on the GIL, held by thread %d", h.out.TID)
			}
		}
	}
}

// holders infers who holds the plain Locks waited for: the other thread
// whose frames refer to the lock most strongly (a with block over it,
// else a local), when exactly one does, and never a thread that waits
// for that lock itself.
func (w *lockWalk) holders() {
	for _, lt := range w.threads {
		wf := &lt.out.WaitsFor
		if wf.Kind != WaitLock || wf.Type != "Lock" || lt.waitOn == 0 {
			continue
		}
		if s, err := cpython.ReadSync(w.r, w.m.l, lt.waitOn); err == nil && s.Locked == 0 {
			wf.Evidence += "; the lock is free (being released)"
			continue
		}
		best, bestN := 0, 0
		var who *lockThread
		var what string
		for _, o := range w.threads {
			if o == lt || o.waitOn == lt.waitOn {
				continue
			}
			st, ev := 0, ""
			for fi := range o.frames {
				for _, r := range w.refsOf(o, fi) {
					if r.Obj != lt.waitOn || refStrength(r.Via) <= st {
						continue
					}
					st = refStrength(r.Via)
					switch r.Via {
					case cpython.ViaExit:
						ev = "a with block on it in " + where(o.frames[fi])
					case cpython.ViaLocal:
						ev = fmt.Sprintf("local %s in %s", r.Name, where(o.frames[fi]))
					default:
						ev = "a bound method of it in " + where(o.frames[fi])
					}
				}
			}
			switch {
			case st > best:
				best, bestN, who, what = st, 1, o, ev
			case st == best && st > 0:
				bestN++
			}
		}
		unread := w.unreadBut(lt)
		switch {
		case best == 0 && unread != 0:
			wf.Evidence += fmt.Sprintf("; no other thread refers to it, but the frames of thread %d were not read: holder unknown", unread)
		case best == 0:
			wf.Evidence += "; no other thread refers to it: holder unknown"
		case bestN > 1:
			wf.Evidence += fmt.Sprintf("; %d threads refer to it alike: holder unknown", bestN)
		default:
			wf.HolderTID, wf.HolderInferred = who.out.TID, true
			wf.Evidence += fmt.Sprintf("; held (inferred) by thread %d: %s", who.out.TID, what)
		}
	}
}

// unreadBut returns a thread other than lt whose frames were not read
// (lockThread.unread), 0 when none.
func (w *lockWalk) unreadBut(lt *lockThread) int {
	for _, o := range w.threads {
		if o != lt && o.unread {
			return o.out.TID
		}
	}
	return 0
}

// waitCycles returns the cycles of the wait-for graph (each thread waits
// for at most one other), each starting at its smallest thread id.
func waitCycles(threads []LockThread) [][]int {
	next := map[int]int{}
	for _, t := range threads {
		if t.TID != 0 && t.WaitsFor.HolderTID != 0 {
			next[t.TID] = t.WaitsFor.HolderTID
		}
	}
	out := [][]int{}
	done := map[int]bool{}
	for _, t := range threads {
		seen := map[int]int{}
		var path []int
		for cur := t.TID; cur != 0 && !done[cur]; {
			if i, ok := seen[cur]; ok {
				cyc := append([]int(nil), path[i:]...)
				lo := 0
				for k := range cyc {
					if cyc[k] < cyc[lo] {
						lo = k
					}
				}
				out = append(out, append(cyc[lo:], cyc[:lo]...))
				break
			}
			seen[cur] = len(path)
			path = append(path, cur)
			n, ok := next[cur]
			if !ok {
				break
			}
			cur = n
		}
		for _, p := range path {
			done[p] = true
		}
	}
	return out
}

// lockVerdict writes the one-line answer; it says deadlock only for a
// cycle of the wait-for graph.
func lockVerdict(rep *LockReport) LockVerdict {
	byTID := map[int]LockThread{}
	for _, t := range rep.Threads {
		byTID[t.TID] = t
	}
	if len(rep.Cycles) > 0 {
		var parts []string
		n, inferred := 0, false
		for _, c := range rep.Cycles {
			n += len(c)
			for _, tid := range c {
				t := byTID[tid]
				inferred = inferred || t.WaitsFor.HolderInferred
				parts = append(parts, fmt.Sprintf("thread %d %q waits for %s held%s by thread %d",
					tid, t.Name, waitObject(t.WaitsFor), map[bool]string{true: " (inferred)"}[t.WaitsFor.HolderInferred], t.WaitsFor.HolderTID))
			}
		}
		s := fmt.Sprintf("deadlock: %d threads: %s", n, strings.Join(parts, "; "))
		return LockVerdict{Kind: VerdictDeadlock, Summary: s}
	}
	blocked, running, unknown, gilWaiters, gilHolder := 0, 0, 0, 0, 0
	for _, t := range rep.Threads {
		if t.WaitsFor.Kind == WaitGIL && t.WaitsFor.HolderTID != 0 {
			gilWaiters++
			gilHolder = t.WaitsFor.HolderTID
		}
		if t.WaitsFor.HolderTID != 0 {
			blocked++
		}
		if t.WaitsFor.Kind == WaitNone {
			running++
		}
		if (t.WaitsFor.Kind == WaitLock || t.WaitsFor.Kind == WaitUnknown) && t.WaitsFor.HolderTID == 0 {
			unknown++
		}
	}
	switch {
	case gilWaiters > 0:
		h := byTID[gilHolder]
		s := fmt.Sprintf("GIL held by thread %d %q (%s), %d threads wait for it", h.TID, h.Name, h.State, gilWaiters)
		if h.WaitsFor.Kind != WaitNone {
			// Blocked in C with the GIL, it has held it at least since
			// it last ran.
			// Under a second, the last run may be a pause's (pyglass's
			// own makes the thread run a moment): not said.
			d := ""
			if h.WaitsFor.SinceSeconds != nil && *h.WaitsFor.SinceSeconds >= 1 {
				d = fmt.Sprintf(" for %.1f s", *h.WaitsFor.SinceSeconds)
			}
			s = fmt.Sprintf("GIL held by thread %d %q in C code%s (%s), %d threads wait for it", h.TID, h.Name, d, h.State, gilWaiters)
			if len(h.Native) > 0 {
				s += "; in " + strings.Join(h.Native[:min(len(h.Native), 4)], " <- ")
			}
		}
		return LockVerdict{Kind: VerdictGIL, Summary: s}
	case blocked > 0:
		return LockVerdict{Kind: VerdictBlocked, Summary: fmt.Sprintf("no deadlock: %s for other threads", countThreads(blocked, "waits", "wait"))}
	case unknown > 0:
		return LockVerdict{Kind: VerdictUnknown, Summary: fmt.Sprintf("unknown: %s for a lock whose holder pyglass cannot tell", countThreads(unknown, "waits", "wait"))}
	case running > 0:
		return LockVerdict{Kind: VerdictRunning, Summary: fmt.Sprintf("no deadlock: %s, none waits for another thread", countThreads(running, "running", "running"))}
	}
	return LockVerdict{Kind: VerdictIdle, Summary: "all threads idle: none waits for another thread"}
}

// waitObject describes what w waits for, in a few words.
func waitObject(w WaitFor) string {
	s := w.Type
	if s == "" {
		s = w.Kind
	}
	if w.Object != "" {
		s += " " + w.Object
	}
	if w.Where != "" {
		s += " (" + w.Where + ")"
	}
	return s
}

// describeChild names the child process a thread waits for in wait4
// (pid as the target sees it: arg0 > 0): its pid, command line and state.
func (p *Live) describeChild(wf *WaitFor, arg0 uint64) {
	nsPID := int(int32(uint32(arg0)))
	if nsPID <= 0 {
		wf.Evidence = "waiting for any child process"
		return
	}
	host := 0
	if p.Proc.NSPID == p.Proc.PID {
		host = nsPID
	}
	if host != 0 {
		pr := procfs.New(host)
		st, err := pr.Stat()
		if err == nil && st.PPid == p.PID {
			cmd, _ := pr.Cmdline()
			wf.HolderTID = 0
			wf.Object = fmt.Sprint(host)
			wf.Type = "process"
			wf.Evidence = fmt.Sprintf("waiting on child process %d (%s, state %c)", host, strings.Join(cmd, " "), st.State)
			return
		}
	}
	wf.Object = fmt.Sprint(nsPID)
	wf.Type = "process"
	wf.Evidence = fmt.Sprintf("waiting on child process %d (as the target numbers it)", nsPID)
}

// maxWaitFDs bounds how many of the file descriptors a thread waits on
// (select, poll) are read and named.
const maxWaitFDs = 8

// selectFDs returns the descriptors of the read set (else the write set)
// of a select(nfds, readfds, writefds) in the target's memory; the thread
// is blocked in it, so the sets stay as it passed them.
func selectFDs(r memory.Reader, nfds, readfds, writefds uint64) []int {
	if nfds == 0 || nfds > 1024 {
		return nil
	}
	for _, set := range []uint64{readfds, writefds} {
		if set == 0 {
			continue
		}
		b, err := memory.Bytes(r, set, int(nfds+7)/8, 128)
		if err != nil {
			return nil
		}
		var fds []int
		for fd := 0; fd < int(nfds) && len(fds) < maxWaitFDs; fd++ {
			if b[fd/8]&(1<<(fd%8)) != 0 {
				fds = append(fds, fd)
			}
		}
		if len(fds) > 0 {
			return fds
		}
	}
	return nil
}

// pollFDs returns the descriptors of a poll(fds, nfds): struct pollfd
// {int fd; short events, revents}.
func pollFDs(r memory.Reader, arr, n uint64) []int {
	if arr == 0 || n == 0 {
		return nil
	}
	n = min(n, maxWaitFDs)
	b, err := memory.Bytes(r, arr, int(n)*8, maxWaitFDs*8)
	if err != nil {
		return nil
	}
	var fds []int
	for i := 0; i+8 <= len(b); i += 8 {
		if fd := int32(uint32(b[i]) | uint32(b[i+1])<<8 | uint32(b[i+2])<<16 | uint32(b[i+3])<<24); fd >= 0 {
			fds = append(fds, int(fd))
		}
	}
	return fds
}

// describeFDs names the files a thread waits on (reads from, accepts on,
// selects or polls): a socket by its addresses, else what /proc/PID/fd
// says it is, and the process at the other end of a pipe, of a
// loopback TCP connection or of a Unix socket.
func (p *Live) describeFDs(wf *WaitFor, fds []int, peers *procfs.FDIndex, nets *procfs.NetTables) {
	call := strings.TrimPrefix(wf.Evidence, "in ")
	var parts, objs []string
	for _, fd := range fds {
		if fd < 0 {
			continue
		}
		objs = append(objs, fmt.Sprintf("fd %d", fd))
		typ, what, peer := p.describeFD(fd, peers, nets)
		if typ == "" {
			parts = append(parts, fmt.Sprintf("fd %d", fd))
			continue
		}
		if wf.Type == "" || wf.Type == typ {
			wf.Type = typ
		} else {
			wf.Type = "files"
		}
		parts = append(parts, fmt.Sprintf("%s (fd %d)%s", what, fd, peer))
	}
	wf.Object = strings.Join(objs, ", ")
	if len(parts) == 0 {
		return
	}
	wf.Evidence = fmt.Sprintf("waiting on I/O: %s, %s", strings.Join(parts, "; "), call)
}

// maxPeers bounds how many holders of the other end are named.
const maxPeers = 3

// peerScanBudget bounds the time a report spends looking through /proc
// for the holders of other ends (one scan, however many descriptors).
const peerScanBudget = 250 * time.Millisecond

// peerIndex returns the index that names the holders of other ends: it
// looks into the target and its parent first (a pipe from the program
// that started it), then their other children (a shell pipeline, a
// server's other workers), then every process.
func (p *Live) peerIndex() *procfs.FDIndex {
	pr := procfs.New(p.PID)
	ppid := 0
	if st, err := pr.Stat(); err == nil && st.PPid > 0 {
		ppid = st.PPid
	}
	first := []int{p.PID}
	if ppid > 0 {
		first = append(first, ppid)
	}
	return procfs.NewFDIndex(pr.Root, peerScanBudget, first...).ThenNear(func() []int {
		near := pr.Children()
		if ppid > 0 {
			near = append(near, procfs.New(ppid).Children()...)
		}
		return near
	})
}

// describeFD says what descriptor fd of the target is: its type
// ("socket", "pipe", "file"; "" when unreadable), a description, and
// who holds the other end (", other end: process 42 (sleep) fd 1").
func (p *Live) describeFD(fd int, peers *procfs.FDIndex, nets *procfs.NetTables) (typ, what, ends string) {
	pr := procfs.New(p.PID)
	what, err := pr.FD(fd)
	if err != nil {
		return "", "", ""
	}
	typ = "file"
	peer := ""
	if ino, ok := strings.CutPrefix(what, "socket:["); ok {
		typ = "socket"
		if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); err == nil {
			if s, ok := nets.Socket(n); ok {
				what = s
				if pn, ok := nets.TCPPeer(n); ok {
					peer = fmt.Sprintf("socket:[%d]", pn)
				}
			} else if pn, ok := procfs.UnixPeer(n); ok {
				what = "unix " + what
				peer = fmt.Sprintf("socket:[%d]", pn)
			}
		}
	} else if strings.HasPrefix(what, "pipe:[") {
		typ, peer = "pipe", what
	}
	if peer == "" {
		return typ, what, ""
	}
	var holders []string
	found, complete := peers.Holders(peer, maxPeers, procfs.FDHolder{PID: p.PID, FD: fd})
	for _, h := range found {
		comm := "?"
		if st, err := procfs.New(h.PID).Stat(); err == nil {
			comm = st.Comm
		}
		holders = append(holders, fmt.Sprintf("process %d (%s) fd %d", h.PID, comm, h.FD))
	}
	switch {
	case len(holders) > 0:
		ends = ", other end: " + strings.Join(holders, ", ")
	case !complete:
		ends = fmt.Sprintf(", other end: not found (the search of the host's processes stopped after %v)", peerScanBudget)
	}
	return typ, what, ends
}

// queueLen reads the number of items of a queue.Queue (its deque
// "queue"), when it is one.
func (w *lockWalk) queueLen(q uint64) (int, bool) {
	if q == 0 {
		return 0, false
	}
	dq, err := cpython.InstanceAttr(w.r, w.m.l, q, "queue")
	if err != nil {
		return 0, false
	}
	n, err := cpython.DequeLen(w.r, w.m.l, dq)
	return n, err == nil
}
