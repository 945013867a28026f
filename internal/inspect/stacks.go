package inspect

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
	"github.com/pyglass/pyglass/target/live"
)

// TestHookWalk, when set (tests), is called while the threads are
// paused, before each interpreter's threads are read.
var TestHookWalk func()

// Memory is what the CPython decoders need to read the target.
type Memory struct {
	proc io.Closer     // nil: a core
	r    memory.Reader // proc, or what Process.memHook made of it
	l    *layout.Layout
	img  cpython.Image
}

// ImageOf is what the CPython decoders need to know of the interpreter
// image found by pyproc.
func ImageOf(py *pyproc.Python) cpython.Image {
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
		if isAgentThread(t.Frames, t.Error == "" && len(t.Frames) < cpython.DefaultMaxDepth) {
			t.Name = AgentThreadName
		}
		if t.Name == "" && t.TID != 0 {
			t.Name = kernel[t.TID].Name
		}
	}
}

// isAgentThread reports whether a thread whose frames are these (outermost
// first) is one of pyglass's agent: the thread that runs it, whose first
// frame is the bootstrap (a string exec'd or run by PyRun_SimpleString)
// and whose second is the agent's module, or the thread the agent
// started, whose first frame is the agent's. Any thread may be in the
// agent's code further up: print() in another thread goes through the
// agent's sys.stdout router while a session runs. A stack not read
// whole (an error, or deeper than the walk goes) lacks its outermost
// frames: it is the agent's when it holds one of the functions that run
// only on the agent's threads.
func isAgentThread(frames []Frame, whole bool) bool {
	switch {
	case len(frames) > 0 && frames[0].File == agentFile:
		return true
	case len(frames) > 1 && frames[0].File == "<string>" && frames[1].File == agentFile && frames[1].Function == "<module>":
		return true
	}
	if !whole {
		for _, f := range frames {
			if f.File == agentFile && agentOnly[f.Function] {
				return true
			}
		}
	}
	return false
}

// agentOnly are the agent's functions that only its own threads run (its
// module, its session loop, its reader), never a thread printing through
// its router.
var agentOnly = map[string]bool{"<module>": true, "_main": true, "_serve": true, "_reader_main": true}

// readStack reads the frames of thread t.
func readStack(rd memory.Reader, m *Memory, t cpython.Thread, opt StackOptions) ([]Frame, string) {
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

// entering reports whether a thread whose stack read as (frames,
// errText), in the read that found it inside the evaluation loop or not
// (cpython.Thread.InEval), was caught entering that loop (3.11, 3.12):
// inside it yet without a frame, or with one that does not read. For
// a few instructions the loop's _PyCFrame is linked into the thread
// state but its frame is not yet written: the state then holds whatever
// that C stack slot held (0, 0x6, a pointer to anything). A moment later
// the frame is there.
func entering[F any](inEval bool, frames []F, errText string) bool {
	return inEval && (len(frames) == 0 || errText != "")
}

// enteringNote is the error of a thread still caught entering the
// evaluation loop (see entering) when its stack was read for the last
// time, when that read gave no error of its own.
const enteringNote = "no frame: caught entering the evaluation loop, its frame not linked yet"

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
// without error, if any. inEval goes with the read (frames, errText) and
// is returned with the read returned (cpython.Thread.InEval); a thread
// caught entering the evaluation loop is not stable.
func stableStack(m *Memory, interp, tstate uint64, opt StackOptions, frames []Frame, errText string, inEval bool) ([]Frame, string, bool) {
	for try := 0; try < tornRetries; try++ {
		if try >= 3 {
			briefly(time.Duration(try) * 20 * time.Microsecond)
		}
		rd := newPageCache(m.r)
		t := cpython.ReadThread(rd, m.l, interp, tstate)
		f, e := readStack(rd, m, t, opt)
		if e == "" && errText == "" && sameFrames(f, frames) && !entering(t.InEval, f, e) {
			return f, e, t.InEval
		}
		if e == "" || errText != "" {
			frames, errText, inEval = f, e, t.InEval
		}
	}
	return frames, errText, inEval
}

// briefly sleeps d, under a millisecond, in clock_nanosleep: a Go timer
// would wake the caller a millisecond later at best (ARCHITECTURE.md,
// "Threads and the ptrace tracer").
func briefly(d time.Duration) { procfs.Nanosleep(d) }

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
// once, through one buffer, up to the last line a frame needs, and only
// the lines the frames need are kept.
func addSource(pid int, d *StackDump) {
	need := map[string][]int{} // file -> the lines its frames need
	for _, t := range d.Threads {
		for _, f := range t.Frames {
			if f.Line > 0 && f.Line <= maxSourceLines && strings.HasPrefix(f.File, "/") {
				need[f.File] = append(need[f.File], f.Line)
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
	buf := make([]byte, sourceChunk)
	lines := map[string]map[int]string{}
	for file, want := range need {
		fh, err := root.OpenFile(file)
		if err != nil {
			continue
		}
		slices.Sort(want)
		lines[file] = wantedLines(fh, slices.Compact(want), buf, maxSourceLine)
		fh.Close()
	}
	for ti := range d.Threads {
		for fi := range d.Threads[ti].Frames {
			f := &d.Threads[ti].Frames[fi]
			if l, ok := lines[f.File][f.Line]; ok {
				f.Source = strings.TrimSpace(l)
			}
		}
	}
}

// maxSourceLines bounds the lines read from one source file, and
// maxSourceLine the length of a line: a file with a longer line is read
// up to it.
const (
	maxSourceLines = 200000
	maxSourceLine  = 1 << 20
)

// sourceChunk is the size of the reads of a source file, and
// maxEmptyReads how many reads in a row may return nothing.
const (
	sourceChunk   = 16 << 10
	maxEmptyReads = 100
)

// wantedLines reads r, through buf, up to the last of the line numbers
// want (1-based, sorted, without duplicates) and returns those lines by
// number, without their line ends ("\n", "\r\n"). A line longer than
// maxLine ends the reading: it and the lines after it are left out, as
// are those after a read error or the end of the file.
func wantedLines(r io.Reader, want []int, buf []byte, maxLine int) map[int]string {
	out := make(map[int]string, len(want))
	for len(want) > 0 && want[0] < 1 {
		want = want[1:]
	}
	var cur []byte // the wanted line being read, across reads
	line, length, empty := 1, 0, 0
	for len(want) > 0 {
		n, err := r.Read(buf)
		if n == 0 && err == nil {
			if empty++; empty > maxEmptyReads {
				return out // a reader that never ends nor gives bytes
			}
			continue
		}
		empty = 0
		chunk := buf[:n]
		for len(chunk) > 0 && len(want) > 0 {
			part, rest, ended := bytes.Cut(chunk, []byte{'\n'})
			if length += len(part); length > maxLine {
				return out
			}
			if line == want[0] {
				cur = append(cur, part...)
			}
			if !ended {
				break
			}
			if line == want[0] {
				out[line] = string(bytes.TrimSuffix(cur, []byte{'\r'}))
				cur, want = cur[:0], want[1:]
			}
			line, length, chunk = line+1, 0, rest
		}
		if err != nil {
			if len(want) > 0 && line == want[0] && length > 0 {
				out[line] = string(bytes.TrimSuffix(cur, []byte{'\r'})) // the last line, without an end
			}
			return out
		}
	}
	return out
}

// TestHookPaused, when set (tests), receives how long Stacks held the
// threads paused.
var TestHookPaused func(time.Duration)

// stackArena is the memory of a stacks read's page cache: 128 pages
// (10 threads 25 frames deep touch about 120); more come from the heap.
// Faulting them in costs about as much before the pause as during it.
const stackArena = 512 << 10

// Stacks is Process.Stacks on the live process p, its memory open as m.
func Stacks(ctx context.Context, p *Live, m *Memory, opt StackOptions) (_ *StackDump, err error) {
	snap := p.Snapshot(m.r, opt.NonBlocking)
	// The copies of the target's pages: in memory faulted in before the
	// pause (in one system call), not page by page during it.
	arena := live.NewSmallArena(stackArena)
	defer arena.Release()
	sr := &stackRead{tgt: snap, m: m, opt: opt, pages: arena, what: fmt.Sprintf("process %d", p.PID), gone: p.Gone, retry: opt.NonBlocking, later: !opt.NonBlocking,
		dump: &StackDump{PID: p.PID, Python: PythonRef{Version: p.Py.Version.String(), Path: p.Py.Path}}}
	if opt.Native && !opt.NonBlocking {
		// The modules are listed before the pause, to keep it short.
		if sr.nv, err = p.liveNativeView(snap); err != nil {
			return nil, p.Gone(&errs.Error{Kind: errs.Permission, Msg: fmt.Sprintf("cannot read the mappings of process %d", p.PID), Err: err})
		}
		defer sr.nv.close()
	}
	var frozen *ptrace.Frozen
	var pausedAt time.Time
	if !opt.NonBlocking {
		frozen, err = p.Freeze()
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
		if TestHookPaused != nil {
			TestHookPaused(time.Since(pausedAt))
		}
		p.addWaits(sr.rd, m, dump, sr.waits)
		p.readLater(m, sr)
	}
	sr.finish()
	addSource(p.PID, dump)
	return dump, nil
}

// readLater reads again, in a second short pause (and a third, if
// needed), what the paused read could not get:
//   - the thread names of the interpreters whose names could not be read
//     at all: paused, a thread may have been caught in the middle of
//     changing threading._active (a resize), which the paused read cannot
//     get through; a moment later the dictionary is whole again. (Read
//     without pausing, an entry could point at a freed Thread whose
//     memory now holds something else.)
//   - the stacks of the threads caught entering the evaluation loop
//     (see entering): a moment later their frame is linked. Not with
//     native frames, which were unwound in the first pause: those threads
//     keep enteringNote.
//
// The other threads and their frames are those of the first pause; a
// thread that has exited meanwhile stays unnamed, or keeps enteringNote.
func (p *Live) readLater(m *Memory, sr *stackRead) {
	dump, idents, unnamed := sr.dump, sr.idents, sr.unnamed
	var relink []laterStack
	if !sr.opt.Native {
		relink = append(relink, sr.entering...)
	}
	if len(unnamed) == 0 && len(relink) == 0 {
		return
	}
	p.inLaterPauses(m, func(rd *pageCache) bool {
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
		still := relink[:0]
		for _, e := range relink {
			t := cpython.ReadThread(rd, m.l, e.interp, e.tstate)
			if t.ThreadID != idents[e.index] {
				continue // the state is now another thread's (or freed)
			}
			f, errText := readStack(rd, m, t, sr.opt)
			if entering(t.InEval, f, errText) {
				still = append(still, e)
				continue
			}
			th := &dump.Threads[e.index]
			th.Frames, th.Error = f, errText
		}
		relink = still
		return len(unnamed) > 0 || len(relink) > 0
	})
}

// inLaterPauses runs read in one short pause a millisecond after the
// last, and in a second one a millisecond later if read reports that
// something is still left to read, each time with a fresh page cache.
// It stops when the threads cannot be paused (the process ended).
func (p *Live) inLaterPauses(m *Memory, read func(rd *pageCache) (more bool)) {
	for try := 0; try < 2; try++ {
		time.Sleep(time.Millisecond)
		frozen, err := p.Freeze()
		if err != nil {
			return
		}
		more := func() bool {
			defer frozen.Thaw() // on a panic too
			return read(newPageCache(m.r))
		}()
		if !more {
			return
		}
	}
}

// laterStack is a thread whose stack readLater reads again.
type laterStack struct {
	index  int    // its index in StackDump.Threads (and stackRead.idents)
	interp uint64 // its interpreter's address
	tstate uint64 // its PyThreadState's address
}
