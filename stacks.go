package pyglass

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/internal/rootfs"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
	"github.com/pyglass/pyglass/target/live"
)

// testHookWalk, when set (tests), is called while the threads are
// paused, before each interpreter's threads are read.
var testHookWalk func()

// testHookPaused, when set (tests), receives how long Stacks held the
// threads paused.
var testHookPaused func(time.Duration)

// testHookThaw, when set (tests), is given how long each pause of a
// paused snapshot held the target's threads.
var testHookThaw func(time.Duration)

// memoryView is what the CPython decoders need to read the target.
type memoryView struct {
	proc *live.Process
	r    memory.Reader // proc, or what Process.memHook made of it
	l    *layout.Layout
	img  cpython.Image
}

// openMemory opens the target's memory and picks the layout for its
// interpreter (3.13+: from the target's own _Py_DebugOffsets).
func (p *Process) openMemory() (*memoryView, error) {
	r, err := live.Open(p.pid)
	if err != nil {
		if errors.Is(err, procfs.ErrNoProcess) {
			return nil, errorf(ErrNoProcess, "", "process %d exited", p.pid)
		}
		return nil, &Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot read the memory of process %d", p.pid), Err: err,
			Hint: rootHint("run pyglass as the process's user")}
	}
	img := imageOf(p.py)
	var mem memory.Reader = r
	if p.memHook != nil {
		mem = p.memHook(r)
	}
	l, err := p.layoutFor(mem, img)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &memoryView{proc: r, r: mem, l: l, img: img}, nil
}

// imageOf is what the CPython decoders need to know of the interpreter
// image found by pyproc.
func imageOf(py *pyproc.Python) cpython.Image {
	v := py.Version
	img := cpython.Image{Major: v.Major, Minor: v.Minor, Micro: v.Micro, Symbol: py.Symbol}
	if py.Runtime.End != 0 {
		img.PyRuntime = [2]uint64{py.Runtime.Start, py.Runtime.End}
	}
	for _, d := range py.Data {
		img.Data = append(img.Data, [2]uint64{d.Start, d.End})
	}
	return img
}

// layoutFor picks the structure layout of the target's interpreter
// (layout.ForTarget): 3.13+ from its own _Py_DebugOffsets, checked, or
// pyglass's table with a warning. A free-threaded build and a version
// pyglass cannot decode are ErrNotPython, said in one line.
func (p *Process) layoutFor(r memory.Reader, img cpython.Image) (*layout.Layout, error) {
	v := p.py.Version
	rt, _ := img.RuntimeAddr()
	l, warnings, err := layout.ForTarget(r, rt, v.Major, v.Minor)
	for _, w := range warnings {
		p.warn(w)
	}
	switch {
	case errors.Is(err, layout.ErrFreeThreaded):
		return nil, errorf(ErrNotPython, "run the program with a build of Python with the GIL (python3.N, not python3.Nt)",
			"process %d: Python %s is a free-threaded build (no GIL), which pyglass does not support yet", p.pid, v)
	case errors.Is(err, layout.ErrUnsupported):
		return nil, &Error{Kind: ErrNotPython, Msg: fmt.Sprintf("process %d", p.pid), Err: err}
	case err != nil:
		return nil, &Error{Kind: ErrNotPython, Msg: fmt.Sprintf("process %d: Python %s: cannot decode its structures", p.pid, v), Err: err}
	}
	return l, nil
}

func (m *memoryView) close() { m.proc.Close() }

// current checks that the process is still the one Attach inspected:
// the interpreter found then stays valid as long as the process is the
// same one (same start time); when it is not, the process is inspected
// again. A zombie is ErrNotPython.
func (p *Process) current() error {
	st, err := procfs.New(p.pid).Stat()
	if err != nil || procfs.IsZombie(st.State) || st.StartTime != p.proc.StartTime {
		p.refresh()
		if p.proc.Zombie {
			return errorf(ErrNotPython, "", "process %d is a zombie", p.pid)
		}
	}
	return nil
}

// snapshot is the target as a target.Target: its threads as /proc lists
// them now (with, when withSyscall, the system call each is blocked in),
// its memory read through mem (nil when not needed).
func (p *Process) snapshot(mem memory.Reader, withSyscall bool) *live.Snapshot {
	s, err := live.NewSnapshot(p.pid, mem, p.proc.NSPID != p.proc.PID, withSyscall)
	if err != nil {
		// The task list could not be read (the process is gone, or
		// /proc refused): one more try, through Inspect's listing (no
		// threads when it fails too; Attach no longer keeps a list,
		// which only this fallback used).
		pts, _ := p.proc.Threads()
		ths := make([]target.Thread, 0, len(pts))
		for _, t := range pts {
			ths = append(ths, target.Thread{TID: t.TID, NSTID: t.NSTID, Name: t.Comm, State: target.State{Letter: t.State}})
		}
		s = live.SnapshotOf(p.pid, mem, ths)
	}
	return s
}

// kernelView is the threads of snapshot(nil, withSyscall), indexed.
func (p *Process) kernelView(withSyscall bool) (views map[int]target.Thread, toHost map[int]int, nsTIDs []int, err error) {
	if err := p.current(); err != nil {
		return nil, nil, nil, err
	}
	ix := indexThreads(p.snapshot(nil, withSyscall))
	return ix.byTID, ix.toHost, ix.nsTIDs, nil
}

// stackArena is the memory of a stacks read's page cache: 128 pages
// (10 threads 25 frames deep touch about 120); more come from the heap.
// Faulting them in costs about as much before the pause as during it.
const stackArena = 512 << 10

// Stacks reads every Python thread's stack from the target's memory,
// without running anything in it. Unless opt.NonBlocking, the threads are
// paused (PTRACE_SEIZE + PTRACE_INTERRUPT, no signal) while they are
// read and resumed at once; a thread the user had stopped stays stopped.
// A thread that cannot be read is returned with its Error set.
func (p *Process) Stacks(ctx context.Context, opt StackOptions) (_ *StackDump, err error) {
	defer guard(&err, "stacks", p.pid)
	if p.proc.Zombie {
		return nil, errorf(ErrNotPython, "", "process %d is a zombie", p.pid)
	}
	if err := p.current(); err != nil {
		return nil, err
	}
	m, err := p.openMemory()
	if err != nil {
		return nil, err
	}
	defer m.close()
	snap := p.snapshot(m.r, opt.NonBlocking)
	// The copies of the target's pages: in memory faulted in before the
	// pause (in one system call), not page by page during it.
	arena := live.NewSmallArena(stackArena)
	defer arena.Release()
	sr := &stackRead{tgt: snap, m: m, opt: opt, pages: arena, what: fmt.Sprintf("process %d", p.pid), gone: p.goneOr, retry: opt.NonBlocking, later: !opt.NonBlocking,
		dump: &StackDump{PID: p.pid, Python: PythonRef{Version: p.py.Version.String(), Path: p.py.Path}}}
	if opt.Native && !opt.NonBlocking {
		// The modules are listed before the pause, to keep it short.
		if sr.nv, err = p.liveNativeView(snap); err != nil {
			return nil, p.goneOr(&Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot read the mappings of process %d", p.pid), Err: err})
		}
		defer sr.nv.close()
	}
	var frozen *ptrace.Frozen
	var pausedAt time.Time
	if !opt.NonBlocking {
		frozen, err = p.freeze()
		if err != nil {
			return nil, err
		}
		defer frozen.Thaw()
		pausedAt = time.Now()
		snap.Hold(frozen)
	}
	if err := sr.read(ctx); err != nil {
		return nil, err
	}
	dump := sr.dump
	if frozen != nil {
		frozen.Thaw()
		if testHookPaused != nil {
			testHookPaused(time.Since(pausedAt))
		}
		p.addWaits(sr.rd, m, dump, sr.waits)
		p.nameLater(m, dump, sr.idents, sr.unnamed)
	}
	sr.finish()
	addSource(p.pid, dump)
	return dump, nil
}

// addThread appends ts (whose Python thread ident is ident) to dump and
// idents, keeping one entry per task: 2.7 creates a new thread's state in
// the parent thread, with the parent's id, until the new thread takes it:
// a frameless twin of the parent. byTID maps the tasks of the current
// interpreter to their index in dump.Threads.
func addThread(dump *StackDump, byTID map[int]int, idents []uint64, ts ThreadStack, ident uint64) []uint64 {
	if j, dup := byTID[ts.TID]; dup && ts.TID != 0 {
		if len(ts.Frames) == 0 && ts.Error == "" {
			return idents
		}
		if old := dump.Threads[j]; len(old.Frames) == 0 && old.Error == "" {
			dump.Threads[j], idents[j] = ts, ident
			return idents
		}
	}
	byTID[ts.TID] = len(dump.Threads)
	dump.Threads = append(dump.Threads, ts)
	return append(idents, ident)
}

// sortThreads puts the main thread first, then the threads in the order
// they were created.
func sortThreads(dump *StackDump) {
	sort.SliceStable(dump.Threads, func(i, j int) bool {
		a, b := dump.Threads[i], dump.Threads[j]
		if a.Interpreter != b.Interpreter {
			return a.Interpreter < b.Interpreter
		}
		if a.Main != b.Main {
			return a.Main
		}
		return a.TID < b.TID
	})
}

// agentFile is the file name of the code of pyglass's agent, and
// AgentThreadName the name its thread is shown with.
const (
	agentFile       = "<pyglass-agent>"
	AgentThreadName = "pyglass agent"
)

// nameUnnamed names the threads threading does not name (a program that
// never imported it, gevent's main thread, a thread started by C code):
// pyglass's own agent thread as such, the others by the kernel's name for
// the thread (its comm), when the thread is known.
func nameUnnamed(dump *StackDump, kernel map[int]target.Thread) {
	for i := range dump.Threads {
		t := &dump.Threads[i]
		for _, f := range t.Frames {
			if f.File == agentFile {
				t.Name = AgentThreadName
			}
		}
		if t.Name == "" && t.TID != 0 {
			t.Name = kernel[t.TID].Name
		}
	}
}

// readStack reads the frames of thread t.
func readStack(rd memory.Reader, m *memoryView, t cpython.Thread, opt StackOptions) ([]Frame, string) {
	out := []Frame{}
	errText := ""
	if t.Err != nil {
		errText = t.Err.Error()
	}
	if t.Frame == 0 {
		return out, errText
	}
	frames, ferr := cpython.Frames(rd, m.l, t.Frame, cpython.FrameOptions{Locals: opt.Locals})
	for _, f := range frames {
		out = append(out, Frame{Function: f.Function, File: f.File, Line: f.Line, Locals: f.Locals, entry: f.Entry, shim: f.Shim})
	}
	if ferr != nil && errText == "" {
		errText = "reading frames: " + ferr.Error()
	}
	return out, errText
}

// tornRetries bounds how many times the stack of a thread read without
// pausing is read again.
const tornRetries = 30

// stableStack reads again, afresh, the stack of the thread whose state is
// at tstate, after a read without pausing gave (frames, errText), until
// two reads in a row give the same frames without error. A thread that
// calls and returns all the time changes its frame chain under the read:
// such a torn read fails (a cycle, a null code object) or, worse, follows
// a caller pointer into a freed frame and ends early, looking whole; two
// reads that agree were not torn (the chain stayed the same across both).
// It gives up after tornRetries tries and then returns the last read
// without error, if any.
func stableStack(m *memoryView, interp, tstate uint64, opt StackOptions, frames []Frame, errText string) ([]Frame, string) {
	for try := 0; try < tornRetries; try++ {
		if try >= 3 {
			time.Sleep(time.Duration(try) * 20 * time.Microsecond)
		}
		rd := newPageCache(m.r)
		f, e := readStack(rd, m, cpython.ReadThread(rd, m.l, interp, tstate), opt)
		if e == "" && errText == "" && sameFrames(f, frames) {
			return f, e
		}
		if e == "" || errText != "" {
			frames, errText = f, e
		}
	}
	return frames, errText
}

// sameFrames reports whether two reads of a stack give the same frames.
func sameFrames(a, b []Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Function != b[i].Function || a[i].File != b[i].File || a[i].Line != b[i].Line {
			return false
		}
	}
	return true
}

// noNames reports whether threads with Python thread idents were all
// read without a name: threading._active could not be read.
func noNames(threads []cpython.Thread) bool {
	idents := 0
	for _, t := range threads {
		if t.Name != "" {
			return false
		}
		if t.ThreadID != 0 {
			idents++
		}
	}
	return idents > 0
}

// nameLater reads the thread names again, in a second short pause, for
// the interpreters whose names could not be read at all: paused, a thread
// may have been caught in the middle of changing threading._active (a
// resize), which the paused read cannot get through; a moment later the
// dictionary is whole again. (Read without pausing, an entry could point
// at a freed Thread whose memory now holds something else.) Threads and
// frames are those of the first pause; a thread that has exited meanwhile
// stays unnamed. idents are the Python thread idents of dump.Threads (same
// order); unnamed maps interpreter indexes to addresses.
func (p *Process) nameLater(m *memoryView, dump *StackDump, idents []uint64, unnamed map[int]uint64) {
	for try := 0; try < 2 && len(unnamed) > 0; try++ {
		time.Sleep(time.Millisecond)
		frozen, err := p.freeze()
		if err != nil {
			return
		}
		defer frozen.Thaw() // on a panic too; a second Thaw does nothing
		for i, interp := range unnamed {
			names, err := cpython.ThreadNames(newPageCache(m.r), m.l, interp)
			if err != nil {
				continue
			}
			for j := range dump.Threads {
				if t := &dump.Threads[j]; t.Interpreter == i && t.Name == "" {
					t.Name = names[idents[j]]
				}
			}
			delete(unnamed, i)
		}
		frozen.Thaw()
	}
}

// maxTracerWait bounds how long freeze waits for another pyglass that
// holds the target paused (its pause lasts about a millisecond).
const maxTracerWait = time.Second

// freeze pauses every thread. The kernel refuses to seize a thread that is
// exiting with EPERM, as it refuses a forbidden one: when the whole process
// is exiting, that is ErrNoProcess; when one thread was, a new try
// succeeds. A thread traced by another pyglass (a concurrent stacks or
// exec) is released within milliseconds: freeze waits for it, with
// backoff, up to maxTracerWait. Another tracer is a real refusal.
func (p *Process) freeze() (*ptrace.Frozen, error) {
	var err error
	deadline := time.Now().Add(maxTracerWait)
retry:
	for try, quiet := 0, 0; ; try++ {
		var f *ptrace.Frozen
		release := holdGC()
		if f, err = ptrace.Freeze(p.pid); err == nil {
			f.OnThaw = func(held time.Duration) {
				release()
				if testHookThaw != nil {
					testHookThaw(held)
				}
			}
			return f, nil
		}
		release()
		if !errors.Is(err, ptrace.ErrPermission) || time.Now().After(deadline) {
			break
		}
		// The tracer seen when the thread was refused: looking again
		// later would often find none, the other pyglass having let go
		// meanwhile, and take a busy target for a real refusal.
		var traced *ptrace.AlreadyTraced
		seen := errors.As(err, &traced)
		switch {
		case seen && isPyglass(traced.Tracer):
		case seen && procfs.New(traced.Tracer).Exists():
			break retry // traced by someone else
		case quiet >= 3:
			break retry
		default:
			// No tracer (it let go between the refusal and the look),
			// a tracer that ended since (its tracees are let go), a
			// thread exiting, or a real refusal: a few tries only.
			quiet++
		}
		// Backoff with jitter, so that two pyglasses that each hold
		// some of the threads do not retry in step.
		d := time.Millisecond << min(try, 6)
		time.Sleep(d/2 + time.Duration(rand.Int64N(int64(d))))
		if gone := p.goneOr(nil); gone != nil {
			return nil, gone
		}
	}
	if gone := p.goneOr(nil); gone != nil {
		return nil, gone // exited while being paused
	}
	return nil, p.ptraceError(err)
}

// isPyglass reports whether thread tid belongs to a pyglass: this
// process (another goroutine's freeze, or the tracer thread of a failed
// one, still exiting), the same executable, or a program named pyglass.
func isPyglass(tid int) bool {
	if procfs.Self().HasTask(tid) {
		return true
	}
	if self, err := procfs.Self().Exe(); err == nil {
		if exe, err := procfs.New(tid).Exe(); err == nil && exe == self {
			return true
		}
	}
	comm, err := procfs.New(tid).Comm()
	return err == nil && strings.HasPrefix(comm, "pyglass")
}

// rootHint is hint, with "or run pyglass as root" unless pyglass is root.
func rootHint(hint string) string {
	if os.Geteuid() == 0 {
		return hint
	}
	if hint == "" {
		return "run pyglass as root"
	}
	return hint + ", or run pyglass as root"
}

func (p *Process) ptraceError(err error) error {
	switch {
	case errors.Is(err, procfs.ErrNoProcess):
		return errorf(ErrNoProcess, "", "process %d exited", p.pid)
	case errors.Is(err, ptrace.ErrPermission):
		return &Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot pause the threads of process %d", p.pid), Err: err,
			Hint: rootHint("use --nonblocking to read without pausing")}
	}
	return err
}

// sysFutex is futex(2)'s number on this machine, whose numbers a
// thread's state gives (indexThreads drops another machine's).
func sysFutex() int64 { return target.Futex(target.HostMachine()) }

// syscallState describes a thread blocked in system call nr whose first
// argument is arg0.
func syscallState(nr int64, arg0 uint64, holdsGIL bool, gil [2]uint64) string {
	if nr == sysFutex() && gil[1] != 0 && arg0 >= gil[0] && arg0 < gil[1] && !holdsGIL {
		return "waiting for the GIL"
	}
	name := target.SyscallName(target.HostMachine(), nr)
	if name == "" {
		name = fmt.Sprintf("syscall %d", nr)
	}
	return "idle in " + name
}

// addSource fills Frame.Source from the files as the target sees them:
// resolved inside its root (internal/rootfs), so a container's file named
// in a frame never makes pyglass read a host file. Each file is read
// once, up to the last line a frame needs.
func addSource(pid int, d *StackDump) {
	need := map[string]int{} // file -> last line needed
	for _, t := range d.Threads {
		for _, f := range t.Frames {
			if f.Line > 0 && strings.HasPrefix(f.File, "/") && f.Line > need[f.File] {
				need[f.File] = f.Line
			}
		}
	}
	if len(need) == 0 {
		return
	}
	root, err := procfs.New(pid).OpenRoot()
	if err != nil {
		return
	}
	defer root.Close()
	lines := map[string][]string{}
	for file, last := range need {
		lines[file] = readLines(root, file, min(last, maxSourceLines))
	}
	for ti := range d.Threads {
		for fi := range d.Threads[ti].Frames {
			f := &d.Threads[ti].Frames[fi]
			if ls := lines[f.File]; f.Line > 0 && f.Line <= len(ls) {
				f.Source = strings.TrimSpace(ls[f.Line-1])
			}
		}
	}
}

// maxSourceLines bounds the lines read from one source file.
const maxSourceLines = 200000

// readLines returns the first max lines of the regular file at path
// inside root (fewer if it is shorter), nil if it cannot be read.
func readLines(root *rootfs.Root, path string, max int) []string {
	fh, err := root.OpenFile(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for len(out) < max && sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// threadNames reads the Python thread names from memory (no code run,
// no pause), keyed by our thread ids.
func (p *Process) threadNames() map[int]string {
	d, err := p.Stacks(context.Background(), StackOptions{NonBlocking: true})
	if err != nil {
		return nil
	}
	out := map[int]string{}
	for _, t := range d.Threads {
		if t.Name != "" {
			out[t.TID] = t.Name
		}
	}
	return out
}

// gilHolder names the thread holding the GIL, read from memory.
func (p *Process) gilHolder() (string, bool) {
	d, err := p.Stacks(context.Background(), StackOptions{NonBlocking: true})
	if err != nil {
		return "", false
	}
	for _, t := range d.Threads {
		if t.HoldsGIL {
			s := fmt.Sprintf("thread %d", t.TID)
			if t.Name != "" {
				s += fmt.Sprintf(" (%q)", t.Name)
			}
			if n := len(t.Frames); n > 0 {
				f := t.Frames[n-1]
				s += fmt.Sprintf(", at %s:%d in %s", f.File, f.Line, f.Function)
			}
			return s, true
		}
	}
	return "", false
}
