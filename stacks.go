package pyglass

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target/live"
)

// memoryView is what the CPython decoders need to read the target.
type memoryView struct {
	r   *live.Process
	l   *layout.Layout
	img cpython.Image
}

// openMemory opens the target's memory and picks the layout for its
// interpreter (3.13+: from the target's own _Py_DebugOffsets).
func (p *Process) openMemory() (*memoryView, error) {
	r, err := live.Open(p.pid)
	if err != nil {
		if errors.Is(err, live.ErrProcessGone) {
			return nil, errorf(ErrNoProcess, "", "process %d exited", p.pid)
		}
		return nil, &Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot read the memory of process %d", p.pid), Err: err,
			Hint: "run pyglass as root or as the process's user"}
	}
	v := p.py.Version
	img := cpython.Image{Major: v.Major, Minor: v.Minor, Micro: v.Micro, Symbol: p.py.Symbol}
	if p.py.Runtime.End != 0 {
		img.PyRuntime = [2]uint64{p.py.Runtime.Start, p.py.Runtime.End}
	}
	for _, d := range p.py.Data {
		img.Data = append(img.Data, [2]uint64{d.Start, d.End})
	}
	var l *layout.Layout
	if v.Major == 3 && v.Minor >= 13 {
		if rt, ok := img.RuntimeAddr(); ok {
			l, _ = layout.FromDebugOffsets(r, rt)
		}
	}
	if l == nil {
		l, err = layout.For(v.Major, v.Minor)
		if err != nil {
			r.Close()
			return nil, &Error{Kind: ErrNotPython, Msg: fmt.Sprintf("process %d: Python %s: no structure layout", p.pid, v), Err: err}
		}
	}
	return &memoryView{r: r, l: l, img: img}, nil
}

func (m *memoryView) close() { m.r.Close() }

// taskView is the kernel's view of one thread, read before any freeze.
type taskView struct {
	state   byte
	syscall *procfs.Syscall
}

func (p *Process) kernelView() map[int]taskView {
	pr := procfs.New(p.pid)
	out := map[int]taskView{}
	tids, err := pr.TaskIDs()
	if err != nil {
		return out
	}
	for i, tid := range tids {
		if i >= 4096 {
			break
		}
		var tv taskView
		if st, err := pr.TaskStat(tid); err == nil {
			tv.state = st.State
		}
		if sc, err := pr.TaskSyscall(tid); err == nil {
			tv.syscall = sc
		}
		out[tid] = tv
	}
	return out
}

// nsToHost maps thread ids as the target sees them to ours.
func (p *Process) nsToHost() (map[int]int, []int) {
	m := map[int]int{}
	var ns []int
	for _, t := range p.proc.Threads {
		m[t.NSTID] = t.TID
		ns = append(ns, t.NSTID)
	}
	return m, ns
}

// Stacks reads every Python thread's stack from the target's memory,
// without running anything in it. Unless opt.NonBlocking, the threads are
// paused (PTRACE_SEIZE + PTRACE_INTERRUPT, no signal) while they are
// read and resumed at once; a thread the user had stopped stays stopped.
// A thread that cannot be read is returned with its Error set.
func (p *Process) Stacks(ctx context.Context, opt StackOptions) (*StackDump, error) {
	p.refresh()
	if p.proc.Zombie {
		return nil, errorf(ErrNotPython, "", "process %d is a zombie", p.pid)
	}
	m, err := p.openMemory()
	if err != nil {
		return nil, err
	}
	defer m.close()
	kernel := p.kernelView()
	toHost, nsTIDs := p.nsToHost()

	var frozen *ptrace.Frozen
	if !opt.NonBlocking {
		frozen, err = p.freeze()
		if err != nil {
			return nil, err
		}
		defer frozen.Thaw()
	}
	dump := &StackDump{PID: p.pid, Python: PythonRef{Version: p.py.Version.String(), Path: p.py.Path}}
	interps, err := cpython.FindInterpreters(m.r, m.img, m.l)
	// Read without pausing, the thread list may be changing under us
	// (a thread starting or ending): look again.
	for try := 0; err != nil && opt.NonBlocking && try < 5; try++ {
		time.Sleep(time.Millisecond)
		interps, err = cpython.FindInterpreters(m.r, m.img, m.l)
	}
	if err != nil {
		return nil, p.goneOr(&Error{Kind: ErrNotPython, Msg: fmt.Sprintf("process %d: cannot find the Python interpreter in memory", p.pid), Err: err})
	}
	// The list starts with the newest interpreter; number them from the
	// main one (0), as the target does.
	for a, b := 0, len(interps)-1; a < b; a, b = a+1, b-1 {
		interps[a], interps[b] = interps[b], interps[a]
	}
	for i, interp := range interps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		threads, err := cpython.Threads(m.r, m.l, interp, cpython.ThreadOptions{Image: &m.img, TIDs: nsTIDs})
		if err != nil && len(threads) == 0 {
			dump.Threads = append(dump.Threads, ThreadStack{Interpreter: i, Error: err.Error(), Frames: []Frame{}})
			continue
		}
		gilRange := gilFutexRange(m, interp)
		byTID := map[int]int{} // index in dump.Threads of this interpreter's threads
		for _, t := range threads {
			ts := ThreadStack{Name: t.Name, Main: t.Main, HoldsGIL: t.HoldsGIL, Interpreter: i, Frames: []Frame{}}
			if h, ok := toHost[t.NativeID]; ok {
				ts.TID = h
			} else {
				ts.TID = t.NativeID
			}
			if t.Err != nil {
				ts.Error = t.Err.Error()
			}
			if t.Frame != 0 {
				frames, ferr := cpython.Frames(m.r, m.l, t.Frame, cpython.FrameOptions{Locals: opt.Locals})
				for _, f := range frames {
					ts.Frames = append(ts.Frames, Frame{Function: f.Function, File: f.File, Line: f.Line, Locals: f.Locals})
				}
				if ferr != nil && ts.Error == "" {
					ts.Error = "reading frames: " + ferr.Error()
				}
			}
			ts.State = threadState(kernel[ts.TID], ts.HoldsGIL, gilRange)
			// 2.7 creates a new thread's state in the parent thread, with
			// the parent's id, until the new thread takes it: a frameless
			// twin of the parent. Keep one entry per thread, with frames.
			if j, dup := byTID[ts.TID]; dup && ts.TID != 0 {
				if len(ts.Frames) == 0 && ts.Error == "" {
					continue
				}
				if old := dump.Threads[j]; len(old.Frames) == 0 && old.Error == "" {
					dump.Threads[j] = ts
					continue
				}
			}
			byTID[ts.TID] = len(dump.Threads)
			dump.Threads = append(dump.Threads, ts)
		}
	}
	if frozen != nil {
		frozen.Thaw()
	}
	// Main thread first, then in the order the threads were created.
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
	addSource(p.pid, dump)
	return dump, nil
}

// freeze pauses every thread. The kernel refuses to seize a thread that is
// exiting with EPERM, as it refuses a forbidden one: when the whole process
// is exiting, that is ErrNoProcess; when one thread was, a new try succeeds.
func (p *Process) freeze() (*ptrace.Frozen, error) {
	var err error
	for try := 0; try < 4; try++ {
		var f *ptrace.Frozen
		if f, err = ptrace.Freeze(p.pid); err == nil {
			return f, nil
		}
		if !errors.Is(err, ptrace.ErrPermission) {
			break
		}
		if tp, terr := ptrace.TracerPid(p.pid); terr == nil && tp != 0 && !ownThread(tp) {
			break // traced by someone else: a real refusal
		}
		time.Sleep(time.Duration(try+1) * 2 * time.Millisecond)
		if gone := p.goneOr(nil); gone != nil {
			return nil, gone
		}
	}
	if gone := p.goneOr(nil); gone != nil {
		return nil, gone // exited while being paused
	}
	return nil, p.ptraceError(err)
}

// ownThread reports whether tid is a thread of pyglass itself (the tracer
// thread of a failed freeze, still exiting).
func ownThread(tid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
	return err == nil
}

func (p *Process) ptraceError(err error) error {
	switch {
	case errors.Is(err, ptrace.ErrGone):
		return errorf(ErrNoProcess, "", "process %d exited", p.pid)
	case errors.Is(err, ptrace.ErrPermission):
		return &Error{Kind: ErrPermission, Msg: fmt.Sprintf("cannot pause the threads of process %d", p.pid), Err: err,
			Hint: "use --nonblocking to read without pausing, or run pyglass as root"}
	}
	return err
}

// threadState describes a thread from the kernel's view.
func threadState(tv taskView, holdsGIL bool, gil [2]uint64) string {
	switch tv.state {
	case 'R':
		return "running"
	case 'T', 't':
		return "stopped"
	case 0:
		return "unknown"
	}
	sc := tv.syscall
	if sc == nil || !sc.InSyscall {
		return "sleeping"
	}
	if sc.Nr == sysFutex && gil[1] != 0 && sc.Args[0] >= gil[0] && sc.Args[0] < gil[1] && !holdsGIL {
		return "waiting for the GIL"
	}
	name := syscallNames[sc.Nr]
	if name == "" {
		name = fmt.Sprintf("syscall %d", sc.Nr)
	}
	return "idle in " + name
}

// gilFutexRange is where a thread waiting for the GIL sleeps: the GIL's
// condition variable and mutex (3.x), or its lock (2.7).
func gilFutexRange(m *memoryView, interp uint64) [2]uint64 {
	l := m.l
	switch {
	case l.InterpCevalGil >= 0:
		gil, err := memory.NonNullPtr(m.r, interp+uint64(l.InterpCevalGil))
		if err == nil {
			return [2]uint64{gil, gil + 256}
		}
	case l.RuntimeCevalGilLocked >= 0 && l.GilLocked >= 0:
		if rt, ok := m.img.RuntimeAddr(); ok {
			base := rt + uint64(l.RuntimeCevalGilLocked) - uint64(l.GilLocked)
			return [2]uint64{base, base + 256}
		}
	default:
		if a, ok := m.img.Symbol("gil_cond"); ok { // 3.6 (static, .symtab)
			lo := a
			if b, ok := m.img.Symbol("gil_mutex"); ok && b < lo {
				lo = b
			}
			return [2]uint64{lo, lo + 160}
		}
		if a, ok := m.img.Symbol("interpreter_lock"); ok { // 2.7: a sem_t*
			if lock, err := memory.NonNullPtr(m.r, a); err == nil {
				return [2]uint64{lock, lock + 64}
			}
		}
	}
	return [2]uint64{}
}

// addSource fills Frame.Source from the files as the target sees them.
func addSource(pid int, d *StackDump) {
	cache := map[string][]string{}
	for ti := range d.Threads {
		for fi := range d.Threads[ti].Frames {
			f := &d.Threads[ti].Frames[fi]
			if f.Line <= 0 || !strings.HasPrefix(f.File, "/") {
				continue
			}
			lines, ok := cache[f.File]
			if !ok {
				lines = readLines(fmt.Sprintf("/proc/%d/root%s", pid, f.File), 200000)
				cache[f.File] = lines
			}
			if f.Line <= len(lines) {
				f.Source = strings.TrimSpace(lines[f.Line-1])
			}
		}
	}
}

func readLines(path string, max int) []string {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && len(out) < max {
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
