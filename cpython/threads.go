package cpython

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// errNoRuntime is returned when the address of _PyRuntime is needed but
// unknown.
var errNoRuntime = errors.New("address of _PyRuntime unknown")

// Thread is one Python thread state of an interpreter.
type Thread struct {
	// Addr is the address of the PyThreadState.
	Addr uint64
	// Interp is the PyInterpreterState it belongs to.
	Interp uint64
	// ThreadID is PyThreadState.thread_id: the pthread_t of the thread,
	// also the key of threading._active and what threading.get_ident()
	// returns.
	ThreadID uint64
	// NativeID is the OS thread id (as the target's PID namespace sees
	// it), 0 when unknown. With ThreadOptions.TIDs it is always one of
	// them: the kernel's answer (ThreadOptions.TaskOf) when there is one,
	// else native_thread_id (3.11+) when it is a task of the process (a
	// child forked without PyOS_AfterFork_Child keeps its parent's), else
	// the tid field of glibc's struct pthread (at the address in
	// ThreadID) when it holds one.
	NativeID int
	// Gone is set when the state names, in native_thread_id (3.11+), an
	// OS thread the process does not have, and nothing else ties it to
	// one of ThreadOptions.TIDs: a state a fork without Python's
	// after-fork code left (a uwsgi worker without py-call-osafterfork).
	// Its frames point into a stack the process may have reused.
	Gone bool
	// Name is the threading.Thread name, "" when unknown.
	Name string
	// Main is set for the interpreter's main thread.
	Main bool
	// HoldsGIL is set for the thread holding the GIL.
	HoldsGIL bool
	// Frame is the address of the thread's top frame, 0 when idle:
	// a PyFrameObject (≤3.10) or a _PyInterpreterFrame (3.11+).
	Frame uint64
	// InEval is set, on 3.11 and 3.12, when tstate->cframe is not the
	// thread's root_cframe: the thread is inside the evaluation loop, so
	// it has a frame. The loop links its _PyCFrame into the state before
	// it writes the frame into it: a thread caught in between has as
	// Frame whatever that C stack slot held (0, a stale frame, garbage).
	InEval bool
	// Err records what could not be read about this thread (the other
	// fields are then partly zero); the thread is still listed.
	Err error
}

// ThreadOptions gives Threads what it cannot read from the interpreter.
type ThreadOptions struct {
	// Image locates _PyRuntime and symbols, for the GIL holder and the
	// main thread. Without it HoldsGIL is never set and Main falls back
	// to the oldest thread.
	Image *Image
	// TIDs are the ids in /proc/PID/task (as the target sees them):
	// NativeID is always one of them (or 0), and they are how it is
	// found inside struct pthread.
	TIDs []int
	// TaskOf, when set, maps a thread_id (the pthread_t) to the id of
	// the task whose thread pointer it is, as the kernel gives it while
	// the process is paused; ok is false when no task matches.
	TaskOf func(threadID uint64) (tid int, ok bool)
	// SkipNames skips reading names from threading._active.
	SkipNames bool
	// Machine is the target's ELF machine (a core may come from another
	// machine than pyglass's), which says where glibc keeps a thread's
	// id in its struct pthread: it breaks ties when that id is looked
	// for there. Zero: no tie is broken by where the field is.
	Machine elf.Machine
}

// Threads lists the thread states of interp, newest first. Problems with
// one thread are recorded in its Err; the error result is non-nil only
// when the list itself cannot be read (then the threads read so far are
// returned with it).
func Threads(r memory.Reader, l *layout.Layout, interp uint64, opt ThreadOptions) ([]Thread, error) {
	head, err := memory.Ptr(r, interp+uint64(l.InterpTstateHead))
	if err != nil {
		return nil, fmt.Errorf("reading thread list head: %w", err)
	}
	addrs, listErr := threadList(r, l, interp, head)
	if listErr != nil {
		listErr = fmt.Errorf("reading thread list: %w", listErr)
	}
	threads := make([]Thread, len(addrs))
	for i, a := range addrs {
		threads[i] = readThread(r, l, interp, a)
	}
	if len(opt.TIDs) > 0 {
		resolveTIDs(r, threads, opt)
	}
	markMain(r, l, interp, opt.Image, threads)
	if opt.Image != nil {
		if h, err := GILHolder(r, *opt.Image, l, interp); err == nil {
			for i := range threads {
				threads[i].HoldsGIL = h != 0 && threads[i].Addr == h
			}
		}
	}
	if !opt.SkipNames {
		want := make(map[uint64]bool, len(threads))
		for _, t := range threads {
			want[t.ThreadID] = true
		}
		if names, err := threadNames(r, l, interp, want); err == nil {
			for i := range threads {
				threads[i].Name = names[threads[i].ThreadID]
			}
		}
	}
	return threads, listErr
}

// ReadThread reads one thread state of interp again (its ids and top
// frame; not its name, main or GIL flags).
func ReadThread(r memory.Reader, l *layout.Layout, interp, tstate uint64) Thread {
	return readThread(r, l, interp, tstate)
}

// readThread reads the fields of one PyThreadState.
func readThread(r memory.Reader, l *layout.Layout, interp, a uint64) Thread {
	t := Thread{Addr: a, Interp: interp}
	var errs []error
	var err error
	if t.ThreadID, err = memory.U64(r, a+uint64(l.TstateThreadID)); err != nil {
		errs = append(errs, fmt.Errorf("reading thread_id: %w", err))
	}
	if l.TstateNativeThreadID >= 0 {
		v, err := memory.U64(r, a+uint64(l.TstateNativeThreadID))
		if err != nil {
			errs = append(errs, fmt.Errorf("reading native_thread_id: %w", err))
		} else if v < 1<<31 {
			t.NativeID = int(v)
		}
	}
	if t.Frame, t.InEval, err = topFrame(r, l, a); err != nil {
		errs = append(errs, err)
	}
	t.Err = errors.Join(errs...)
	return t
}

// topFrame returns the address of the thread's current frame and, on
// 3.11 and 3.12, whether the thread is inside the evaluation loop
// (Thread.InEval).
func topFrame(r memory.Reader, l *layout.Layout, tstate uint64) (frame uint64, inEval bool, err error) {
	switch {
	case l.TstateCurrentFrame >= 0:
		f, err := memory.Ptr(r, tstate+uint64(l.TstateCurrentFrame))
		if err != nil {
			return 0, false, fmt.Errorf("reading current_frame: %w", err)
		}
		return f, false, nil
	case l.CFrameCurrentFrame >= 0:
		cf, err := memory.Ptr(r, tstate+uint64(l.TstateCframe))
		if err != nil {
			return 0, false, fmt.Errorf("reading cframe: %w", err)
		}
		if cf == 0 {
			return 0, false, nil
		}
		inEval = cframeInEval(l, tstate, cf)
		f, err := memory.Ptr(r, cf+uint64(l.CFrameCurrentFrame))
		if err != nil {
			return 0, inEval, fmt.Errorf("reading cframe->current_frame: %w", err)
		}
		return f, inEval, nil
	default:
		f, err := memory.Ptr(r, tstate+uint64(l.TstateFrame))
		if err != nil {
			return 0, false, fmt.Errorf("reading frame: %w", err)
		}
		return f, false, nil
	}
}

// cframeInEval reports whether cf, the value of the tstate->cframe of
// the thread state at tstate (3.11, 3.12), says the thread is inside the
// evaluation loop: it is not the state's own root_cframe.
func cframeInEval(l *layout.Layout, tstate, cf uint64) bool {
	return l.TstateRootCframe >= 0 && cf != 0 && cf != tstate+uint64(l.TstateRootCframe)
}

// markMain sets Main on the interpreter's main thread: threads.main
// (3.13+); else, in the main interpreter, the thread whose thread_id is
// _PyRuntime.main_thread (3.8+); else the oldest thread (the list's tail).
func markMain(r memory.Reader, l *layout.Layout, interp uint64, img *Image, threads []Thread) {
	if len(threads) == 0 {
		return
	}
	if l.InterpThreadsMain >= 0 {
		if m, err := memory.Ptr(r, interp+uint64(l.InterpThreadsMain)); err == nil {
			for i := range threads {
				threads[i].Main = m != 0 && threads[i].Addr == m
			}
			return
		}
	}
	if img != nil && l.RuntimeMainThread >= 0 && l.RuntimeInterpretersMain >= 0 {
		if rt, ok := img.RuntimeAddr(); ok {
			mainInterp, err1 := memory.Ptr(r, rt+uint64(l.RuntimeInterpretersMain))
			id, err2 := memory.U64(r, rt+uint64(l.RuntimeMainThread))
			if err1 == nil && err2 == nil {
				if mainInterp != interp {
					return // a subinterpreter: main thread unknown
				}
				for i := range threads {
					threads[i].Main = threads[i].ThreadID == id
				}
				return
			}
		}
	}
	threads[len(threads)-1].Main = true
}

// resolveTIDs sets every thread's NativeID to one of opt.TIDs, or 0.
func resolveTIDs(r memory.Reader, threads []Thread, opt ThreadOptions) {
	tids := make(map[int]bool, len(opt.TIDs))
	for _, t := range opt.TIDs {
		tids[t] = true
	}
	var need []int
	for i := range threads {
		t := &threads[i]
		if opt.TaskOf != nil && t.ThreadID != 0 {
			if tid, ok := opt.TaskOf(t.ThreadID); ok && tids[tid] {
				t.NativeID = tid
				continue
			}
		}
		if !tids[t.NativeID] {
			t.Gone = t.NativeID > 0 && len(tids) > 0
			t.NativeID = 0 // stale (a raw fork's child) or garbage
			need = append(need, i)
		}
	}
	if len(need) > 0 {
		fillPthreadTIDs(r, threads, need, tids, opt.Machine)
	}
	for _, i := range need {
		if threads[i].NativeID != 0 {
			threads[i].Gone = false
		}
	}
}

// glibcTIDOffset is offsetof(struct pthread, tid) in glibc (nptl/descr.h)
// on machine m, -1 when not known; used only to break ties in
// fillPthreadTIDs.
func glibcTIDOffset(m elf.Machine) int {
	switch m {
	case elf.EM_X86_64:
		return 0x2d0
	case elf.EM_AARCH64:
		return 0xd0
	}
	return -1
}

// pthreadScan is how much of struct pthread fillPthreadTIDs scans.
const pthreadScan = 2048

// fillPthreadTIDs finds NativeID inside glibc's struct pthread (the
// address in thread_id) for the threads of index need: the tid field is
// the 4-byte-aligned offset where the most distinct values from tids are
// found, one per thread. A thread that has exited has 0 there (glibc
// clears it). Counting distinct values, not threads: a field that holds
// the same task id in every struct (the process's id, say) must not win
// over the tid field when some threads' tids are missing from tids (they
// were created after it was read), which gave every new thread the main
// thread's task, seen running, for a 100 ms refresh in the profiler.
// A task is never given to the threads of two struct pthreads; a thread
// whose value is taken is left at 0, unknown.
func fillPthreadTIDs(r memory.Reader, threads []Thread, need []int, tids map[int]bool, m elf.Machine) {
	set := map[uint32]bool{}
	for t := range tids {
		if t > 0 {
			set[uint32(t)] = true
		}
	}
	mems := make([][]byte, len(threads))
	found := map[int]map[uint32]bool{}
	for i, t := range threads {
		if t.ThreadID == 0 {
			continue
		}
		b := make([]byte, pthreadScan)
		n, _ := r.ReadAt(b, t.ThreadID)
		mems[i] = b[:n&^3]
		for off := 0; off+4 <= len(mems[i]); off += 4 {
			if v := memory.Order.Uint32(mems[i][off:]); set[v] {
				if found[off] == nil {
					found[off] = map[uint32]bool{}
				}
				found[off][v] = true
			}
		}
	}
	if len(found) == 0 {
		return
	}
	offs := make([]int, 0, len(found))
	for o := range found {
		offs = append(offs, o)
	}
	known := glibcTIDOffset(m)
	sort.Slice(offs, func(i, j int) bool {
		a, b := offs[i], offs[j]
		if len(found[a]) != len(found[b]) {
			return len(found[a]) > len(found[b])
		}
		if (a == known) != (b == known) {
			return a == known
		}
		return a < b
	})
	best := offs[0]
	// task -> the struct pthreads it was found for (thread states of
	// one thread share theirs: a stale one and its successor, say).
	taken := map[int]map[uint64]bool{}
	give := func(id int, pthread uint64) {
		if taken[id] == nil {
			taken[id] = map[uint64]bool{}
		}
		taken[id][pthread] = true
	}
	for i := range threads {
		if id := threads[i].NativeID; id != 0 {
			give(id, threads[i].ThreadID)
		}
	}
	var got []int
	for _, i := range need {
		if best+4 <= len(mems[i]) {
			if v := memory.Order.Uint32(mems[i][best:]); set[v] {
				threads[i].NativeID = int(v)
				give(int(v), threads[i].ThreadID)
				got = append(got, i)
			}
		}
	}
	for _, i := range got {
		if len(taken[threads[i].NativeID]) > 1 {
			threads[i].NativeID = 0
		}
	}
}

// ThreadNames maps thread idents (Thread.ThreadID) to the names of the
// threading.Thread objects in threading._active of interp. It fails when
// the threading module is not imported or cannot be read.
func ThreadNames(r memory.Reader, l *layout.Layout, interp uint64) (map[uint64]string, error) {
	return threadNames(r, l, interp, nil)
}

// threadNames is ThreadNames; when want is not nil, only the threads whose
// idents it holds are looked up (one attribute lookup per thread listed,
// not per entry of a possibly corrupt threading._active).
func threadNames(r memory.Reader, l *layout.Layout, interp uint64, want map[uint64]bool) (map[uint64]string, error) {
	modules, err := memory.NonNullPtr(r, interp+uint64(l.InterpModules))
	if err != nil {
		return nil, fmt.Errorf("reading sys.modules: %w", err)
	}
	mod, err := DictGet(r, l, modules, "threading")
	if err != nil {
		return nil, fmt.Errorf("looking up threading in sys.modules: %w", err)
	}
	md, err := memory.NonNullPtr(r, mod+uint64(l.ModuleMdDict))
	if err != nil {
		return nil, fmt.Errorf("reading threading.__dict__: %w", err)
	}
	active, err := DictGet(r, l, md, "_active")
	if err != nil {
		return nil, fmt.Errorf("looking up threading._active: %w", err)
	}
	items, err := DictItems(r, l, active, MaxThreads)
	if err != nil {
		return nil, fmt.Errorf("reading threading._active: %w", err)
	}
	// A value must be a threading.Thread: read while the program runs, an
	// entry may point at a freed Thread whose memory holds another object.
	thread, err := DictGet(r, l, md, "Thread")
	if err != nil {
		return nil, fmt.Errorf("looking up threading.Thread: %w", err)
	}
	d := newDecoder(r, l)
	attr := "_name"
	if l.Major == 2 {
		attr = "_Thread__name" // self.__name, name-mangled
	}
	names := map[uint64]string{}
	for _, it := range items {
		id, err := Int(r, l, it.Key)
		if err != nil || !id.IsUint64() || want != nil && !want[id.Uint64()] {
			continue
		}
		if !d.instanceOf(it.Value, thread) {
			continue
		}
		n, err := AttrGet(r, l, it.Value, attr)
		if err != nil {
			continue
		}
		s, err := String(r, l, n, MaxNameLen)
		if err != nil {
			continue
		}
		names[id.Uint64()] = s
	}
	return names, nil
}

// maxMRO bounds the classes read from a type's __mro__.
const maxMRO = 64

// instanceOf reports whether obj's type has class cls in its __mro__.
func (d *decoder) instanceOf(obj, cls uint64) bool {
	tp, err := memory.NonNullPtr(d.r, obj+uint64(d.l.ObjectObType))
	if err != nil {
		return false
	}
	if tp == cls {
		return true
	}
	classes, ok := d.mros[tp]
	if !ok {
		mro, err := memory.NonNullPtr(d.r, tp+uint64(d.l.TypeTpMro))
		if err != nil {
			return false
		}
		if classes, err = d.tupleItems(mro, maxMRO); err != nil {
			return false
		}
		if d.mros == nil {
			d.mros = map[uint64][]uint64{}
		}
		if len(d.mros) < maxCachedTypes {
			d.mros[tp] = classes
		}
	}
	for _, c := range classes {
		if c == cls {
			return true
		}
	}
	return false
}
