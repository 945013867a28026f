package inspect

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// MaxRate as SampleOptions.Rate samples as fast as pyglass can, one
// sample right after the other.
const MaxRate = 1e9

// SampleOptions configure Sample.
type SampleOptions struct {
	// Rate is the number of samples per second (100 when zero; MaxRate:
	// as fast as possible).
	Rate float64
	// Duration bounds the sampling (0: until ctx ends or the process
	// exits).
	Duration time.Duration
	// Idle keeps threads that are blocked in the kernel (left out by
	// default).
	Idle bool
	// GIL keeps only the thread holding the GIL.
	GIL bool
	// Blocking pauses the threads for each sample (consistent stacks, at
	// the cost of stopping the target for the read). By default the
	// target is never paused and never written to.
	Blocking bool
	// MaxDepth bounds the frames read per thread (512 when zero).
	MaxDepth int
}

// SampledFrame is one frame of a sampled stack.
type SampledFrame struct {
	Function string
	File     string
	Line     int
}

// ThreadSample is one thread's stack in a Sample.
type ThreadSample struct {
	TID      int
	Name     string
	HoldsGIL bool
	Idle     bool
	// Frames are outermost first. When the stack could not be read the
	// slice is empty and Lost says why.
	Frames []SampledFrame
	Lost   string
}

// Sample is every selected thread's stack at one instant. RunSampler passes
// the same Sample, reused, to each call of its callback: copy what must
// outlive the call.
type Sample struct {
	Time    time.Time
	PID     int
	Threads []ThreadSample
}

// SampleStats says how a sampling run went.
type SampleStats struct {
	// Samples is the number of process samples taken.
	Samples int64
	// Lost counts thread stacks that could not be recorded, by reason
	// ("torn": the stack changed under every read; "vanished": the
	// thread ended; "unreadable").
	Lost map[string]int64
	// Late counts samples skipped because sampling fell behind the rate.
	Late int64
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
	// CPU is the sampler's own CPU time (user+system of this process
	// during the run).
	CPU time.Duration
	// Exited is set when the run ended because the target exited.
	Exited bool
	// Paused is how long the target's threads were paused in all (only
	// with SampleOptions.Blocking), MaxPause the longest pause.
	Paused, MaxPause time.Duration
	// CarriedOver counts thread stacks not read but taken from the
	// sample before: the GIL's switch count showed that the thread had
	// not run Python code since (3.6 and newer, GIL builds).
	CarriedOver int64
	// Unchanged counts thread stacks read but not walked: the memory the
	// last walk of the thread read was the same, byte for byte.
	Unchanged int64
}

// RunSampler reads every Python thread's stack rate times a second and calls
// fn with each sample, until opt.Duration, ctx's end, the target's exit
// or an error from fn (returned as is). Without opt.Blocking the target
// is never paused, traced or written to: a stack that changes while it is
// read is read again, and counted as lost if it changes every time, never
// recorded wrong. A panic of the sampler (a bug, or target memory no
// check foresaw) is returned as an errs.Internal error, after the threads
// were let go; a panic of fn is fn's own and goes on to the caller.
func RunSampler(ctx context.Context, p *Live, m *Memory, opt SampleOptions, fn func(*Sample) error) (_ *SampleStats, err error) {
	rate := opt.Rate
	if rate <= 0 {
		rate = 100
	}
	interval := time.Duration(0)
	if rate < MaxRate {
		interval = time.Duration(float64(time.Second) / rate)
	}
	depth := opt.MaxDepth
	if depth <= 0 {
		depth = 512
	}

	behind := 0
	if v := p.Py.Version; v.Major == 3 && v.Minor >= 11 {
		behind = 1 // frames are contiguous in the data stack
	}
	s := &sampler{p: p, m: m, opt: opt, depth: depth, pc: newSampleCache(m.r, behind), unreadable: map[uint64]bool{}}
	s.cs = cpython.NewSampler(s.pc, m.l)
	s.cs.SetCodeReader(untracked{s.pc})
	stats := &SampleStats{Lost: map[string]int64{}}
	s.stats = stats
	if err := s.refreshThreads(true); err != nil {
		return nil, err
	}
	defer s.close()
	s.refreshKernel()

	// A sampler that wakes late samples where the threads it samples
	// block, not where they spend their time: on a CPU kept busy by a
	// thread of the target, a normal slice lets that thread run up to a
	// few milliseconds more before the sampler's turn, until it blocks.
	// On stacks_flip.py (a thread running 2 ms, sleeping 2 ms), with the
	// other CPU busy, 17 % of its samples were running where it ran 49 %
	// of the time. As fast as it goes, the sampler never sleeps: it keeps
	// the normal slice.
	if interval > 0 {
		restore, _ := procfs.ShortSlice(sampleSlice)
		defer restore()
	}
	cpu0 := procfs.SelfCPU()
	start := time.Now()
	next := start
	var end time.Time
	if opt.Duration > 0 {
		end = start.Add(opt.Duration)
	}
	lastThreads, lastNames, lastForget, lastKernel, lastRunning := start, start, start, start, start
	sample := &Sample{PID: p.PID}
	defer func() {
		stats.Elapsed = time.Since(start)
		stats.CPU = procfs.SelfCPU() - cpu0
	}()
	for {
		now := time.Now()
		if !end.IsZero() && !now.Before(end) {
			return stats, nil
		}
		if err := ctx.Err(); err != nil {
			return stats, nil
		}
		if d := next.Sub(now); d > 0 {
			if !end.IsZero() && next.After(end) {
				d = end.Sub(now)
			}
			// This thread sleeps in the kernel and wakes itself, with
			// its short slice: a Go timer would wake up to a
			// millisecond late, and on another thread first.
			if d < 2*time.Millisecond {
				procfs.Nanosleep(d) // keeping the P: thousands a second
			} else if d > maxSleep {
				procfs.Sleep(maxSleep)
				continue // (ctx is looked at between the sleeps)
			} else {
				procfs.Sleep(d)
			}
			now = time.Now()
		}
		// Fell behind by more than an interval: skip the missed ticks.
		if behind := now.Sub(next); interval > 0 && behind > interval {
			missed := int64(behind / interval)
			stats.Late += missed
			next = next.Add(time.Duration(missed) * interval)
		}
		next = next.Add(interval)

		if now.Sub(lastForget) >= time.Second {
			s.cs.Revalidate(s.m.r)
			clear(s.unreadable)
			for _, t := range s.threads {
				t.hint = t.hint[:0] // what the walks touched: afresh
				// The code objects may have been read again: a
				// stack is walked again, not taken as unchanged.
				t.savedOK = false
			}
			lastForget = now
		}
		// The thread list: read again with the names every second;
		// every 100 ms if the kernel's thread count, an interpreter's
		// thread list head (a new thread state goes first) or a thread
		// of the last sample vanished says it changed; every 10 ms
		// while some thread's task is not known (a thread just created
		// has no native id yet).
		since := now.Sub(lastThreads)
		names := now.Sub(lastNames) >= time.Second
		if names || (s.unmapped > 0 && since >= 10*time.Millisecond) ||
			(since >= 100*time.Millisecond && (s.vanished > 0 || s.changed())) {
			if err := s.refreshThreads(names); err != nil {
				if s.gone() {
					stats.Exited = true
					return stats, nil
				}
				return stats, err
			}
			lastThreads = now
			if names {
				lastNames = now
			}
		} else if since >= 100*time.Millisecond {
			lastThreads = now
		}
		// Every thread's state every 100 ms (every 10 ms when the GIL
		// is not known); the running ones' every 10 ms, and at every
		// sample when idle ones are left out, but for the GIL's holder.
		// An idle thread that wakes to run Python takes the GIL, and the
		// GIL holder is sampled whatever its state says.
		recheck := false
		if d := now.Sub(lastKernel); d >= 100*time.Millisecond || (!s.gilOK && d >= 10*time.Millisecond) {
			s.refreshKernel()
			lastKernel, lastRunning = now, now
			// A process that exited can keep giving samples that look
			// whole: a zombie's idle threads are left out, and what the
			// caches hold still reads. Its end is looked for here too,
			// every 100 ms at most, not only when a read fails.
			if s.gone() {
				stats.Exited = true
				return stats, nil
			}
		} else if !opt.Idle || now.Sub(lastRunning) >= 10*time.Millisecond {
			recheck = true // in take, once the GIL's holder is known
			lastRunning = now
		}
		sample.Time = now
		ok, err := s.take(sample, recheck)
		if err != nil {
			return stats, err
		}
		if !ok || s.vanished > 0 {
			// Threads that vanished: the thread ended, or the whole
			// process did (then this sample is not one).
			if s.gone() {
				stats.Exited = true
				return stats, nil
			}
		}
		if !ok {
			continue
		}
		stats.Samples++
		if err := fn(sample); err != nil {
			return stats, err
		}
	}
}

// sampledThread is what the sampler keeps about one thread between
// refreshes of the thread list.
type sampledThread struct {
	tstate   uint64
	tid      int // host TID, 0 when unknown
	name     string
	interp   uint64
	idle     bool
	frames   []cpython.SampleFrame
	resolved []SampledFrame

	// One sample's state.
	holds      bool
	ptr        uint64 // readTops' current hop
	word       [8]byte
	top, again uint64
	topErr     error
	lost       string
	hint       []pageRange // what the walks touched (reset every second)
	// saved holds the bytes of hint's ranges as the last walk read them
	// (savedOK: all it read, from savedTop): when the same ranges read
	// the same again from the same top, the walk would find the same
	// stack (see unchanged).
	saved    []byte
	savedTop uint64
	savedOK  bool
	mid      uint64   // 3.11, 3.12: the last tstate->cframe read
	before   topWords // the quick read's current frame pointer
	after    topWords // and the same read again after the pages
	state    *procfs.StateFile
	stateTID int
	// goodAt is the number of the last sample that read its stack or
	// carried it over.
	goodAt uint64
}

type sampler struct {
	p       *Live
	m       *Memory
	opt     SampleOptions
	depth   int
	pc      *pageCache
	cs      *cpython.Sampler
	stats   *SampleStats
	threads []*sampledThread
	interps []uint64
	// gil is where the first interpreter's GIL holder is read, found
	// at each refresh of the thread list (gilOK) and read in one
	// vectored read per sample.
	gil    cpython.GILWords
	gilOK  bool
	gilBuf cpython.GILBuf
	// The GIL's switch count and last holders as of the last sample
	// (switchOK: read then), and the sample's number: a thread read
	// (or carried over) at sample seq-1 whose stack can be carried over
	// again is not read (see take).
	switchOK         bool
	switchNo         uint64
	lastHolder, prev uint64
	seq              uint64
	fresh, maybe     []*sampledThread
	// What the last refresh of the thread list saw, to tell when the
	// list may have changed (changed): the kernel's thread count from
	// the process's kept-open stat file, and each interpreter's thread
	// list head.
	stat     *procfs.StateFile
	nTasks   int
	heads    []uint64
	headBufs [][8]byte
	names    map[uint64]string // thread_id -> name, from the last full refresh
	// listPages are the pages the last listing of the threads read.
	listPages []uint64

	sel      []*sampledThread // the threads of one sample
	byAddr   []*sampledThread // readQuick's threads by thread state address
	segs     []memory.Segment
	segOwner []*sampledThread
	segPages []*[pageSize]byte // the pages claimed for the next read (claim)
	segBase  []uint64
	segFresh []bool
	segFrom  int // the index in segs of the first
	pending  []*sampledThread
	slow     []*sampledThread // threads the quick read left to readSlow
	vanished int              // threads of the last sample that could not be found
	unmapped int              // threads whose task is not known
	// unreadable are pages a read failed on, not asked for again ahead
	// of need (forgotten every second).
	unreadable map[uint64]bool
}

// TestHookRefreshThreads and TestHookTaskState, when set (tests), are
// called at each refresh of a sampler's thread list and at each read of
// a thread's scheduler state.
var (
	TestHookRefreshThreads func(withNames bool)
	TestHookTaskState      func()
)

// refreshThreads reads the interpreters' thread lists again; names are
// read again when withNames.
func (s *sampler) refreshThreads(withNames bool) error {
	if TestHookRefreshThreads != nil {
		TestHookRefreshThreads(withNames)
	}
	if s.stat == nil {
		if st, err := procfs.New(s.p.PID).OpenStat(); err == nil {
			s.stat = st
		}
	}
	s.nTasks = -1
	if s.stat != nil {
		if n, err := s.stat.NumThreads(); err == nil {
			s.nTasks = n
		}
	}
	_, toHost, nsTIDs, err := s.p.kernelView(false)
	if err != nil {
		return err
	}
	rd := s.listCache()
	interps, err := cpython.FindInterpreters(rd, s.m.img, s.m.l)
	for try := 0; err != nil && try < 5; try++ {
		time.Sleep(time.Millisecond)
		rd = newPageCache(s.m.r)
		interps, err = cpython.FindInterpreters(rd, s.m.img, s.m.l)
	}
	if err != nil {
		return s.p.Gone(&errs.Error{Kind: errs.NotPython, Msg: fmt.Sprintf("process %d: cannot find the Python interpreter in memory", s.p.PID), Err: err})
	}
	old := map[uint64]*sampledThread{}
	for _, t := range s.threads {
		old[t.tstate] = t
	}
	// The heads first, through the cache the walk reads them from: a
	// thread state added after it is seen by the next check.
	s.heads = s.heads[:0]
	for _, interp := range interps {
		h, err := memory.Ptr(rd, interp+uint64(s.m.l.InterpTstateHead))
		if err != nil {
			s.nTasks = -1 // read it all again next time
		}
		s.heads = append(s.heads, h)
	}
	var threads []*sampledThread
	for _, interp := range interps {
		ts, _ := cpython.Threads(rd, s.m.l, interp, cpython.ThreadOptions{Image: &s.m.img, TIDs: nsTIDs, SkipNames: !withNames && s.names != nil, Machine: target.HostMachine()})
		idents := make(map[uint64]int, len(ts))
		for _, t := range ts {
			idents[t.ThreadID]++
		}
		for _, t := range ts {
			if t.Gone {
				continue // a state of no thread (see cpython.Thread.Gone)
			}
			st := old[t.Addr]
			if st == nil {
				st = &sampledThread{tstate: t.Addr}
			}
			st.interp = interp
			if h, ok := toHost[t.NativeID]; ok {
				st.tid = h
			} else {
				st.tid = 0
			}
			if t.Frame == 0 && t.ThreadID != 0 && idents[t.ThreadID] > 1 {
				// A state its creating thread made (2.7 to 3.10:
				// _thread.start_new_thread), which holds the
				// creator's ident until the new thread starts and
				// sets its own: the creator's task is not its task.
				// Taken as such, the new thread was sampled as
				// running (the creator ran) until the next full
				// listing, up to a second, from its first frame
				// on. Unknown instead: looked up again within
				// 10 ms, idle meanwhile.
				st.tid = 0
			}
			if withNames || s.names == nil {
				if s.names == nil {
					s.names = map[uint64]string{}
				}
				if t.Name != "" {
					s.names[t.ThreadID] = t.Name
				}
			}
			st.name = s.names[t.ThreadID]
			threads = append(threads, st)
		}
	}
	kept := map[*sampledThread]bool{}
	for _, t := range threads {
		kept[t] = true
	}
	for _, t := range s.threads {
		if !kept[t] && t.state != nil {
			t.state.Close()
			t.state = nil
		}
	}
	s.unmapped = 0
	for _, t := range threads {
		if t.tid == 0 {
			s.unmapped++
		}
	}
	s.threads, s.interps = threads, interps
	s.gilOK, s.switchOK = false, false
	if len(interps) > 0 {
		g, err := cpython.FindGIL(rd, s.m.img, s.m.l, interps[0])
		s.gil, s.gilOK = g, err == nil
	}
	// The pages this listing read, for the next one.
	s.listPages = s.listPages[:0]
	for a, pg := range rd.pages {
		if pg != nil && len(s.listPages) < maxListPages {
			s.listPages = append(s.listPages, a)
		}
	}
	return nil
}

// maxListPages bounds the pages a listing of the threads reads ahead.
const maxListPages = 512

// listCache returns the page cache of a listing of the threads, holding
// the pages the last listing read (interpreter and thread states, the
// threading module's dicts, the Thread objects and their names, spread
// over the heap), read again in one vectored read: they took a system
// call each, and the listing, every second, took 8 % of the sampler's
// CPU at 1 kHz.
func (s *sampler) listCache() *pageCache {
	rd := newPageCache(s.m.r)
	if len(s.listPages) > 0 {
		segs := pageSegments(s.listPages, nil)
		rd.keepAll(segs, rd.copyPages(segs))
	}
	return rd
}

// changed reports whether the thread list may have changed since the
// last refresh: the kernel's thread count, or an interpreter's thread
// list head (one vectored read of all heads), is not what it saw.
func (s *sampler) changed() bool {
	if s.stat == nil || s.nTasks < 0 {
		return true
	}
	if n, err := s.stat.NumThreads(); err != nil || n != s.nTasks {
		return true
	}
	for len(s.headBufs) < len(s.interps) {
		s.headBufs = append(s.headBufs, [8]byte{})
	}
	s.segs = s.segs[:0]
	for i, interp := range s.interps {
		s.segs = append(s.segs, memory.Segment{Addr: interp + uint64(s.m.l.InterpTstateHead), Buf: s.headBufs[i][:]})
	}
	memory.ReadV(s.m.r, s.segs)
	for i, seg := range s.segs {
		if seg.Err != nil || memory.Order.Uint64(seg.Buf) != s.heads[i] {
			return true
		}
	}
	return false
}

// refreshKernel reads every thread's scheduler state: a thread blocked in
// the kernel is idle.
func (s *sampler) refreshKernel() {
	for _, t := range s.threads {
		s.readState(t)
	}
}

// readState reads t's scheduler state into t.idle. A thread whose task
// is not known yet (a thread just created, looked up again within 10 ms)
// is taken as idle: unless it holds the GIL it cannot be running Python
// code.
func (s *sampler) readState(t *sampledThread) {
	if t.tid == 0 {
		t.idle = true
		return
	}
	if t.state == nil || t.stateTID != t.tid {
		if t.state != nil {
			t.state.Close()
		}
		st, err := procfs.New(s.p.PID).OpenTaskState(t.tid)
		if err != nil {
			t.state = nil
			return
		}
		t.state, t.stateTID = st, t.tid
	}
	if TestHookTaskState != nil {
		TestHookTaskState()
	}
	state, err := t.state.State()
	if err != nil {
		t.state.Close()
		t.state = nil
		return
	}
	t.idle = state != 'R'
}

// recheckRunning reads again the state of the sample's threads that were
// running at the last look, once their stacks and the GIL's holder are
// read, so that a thread that has just gone to sleep is not sampled as
// running. The GIL's holder is sampled whatever its state says, so its
// state is not read: in a busy program the thread running Python code
// costs no read of /proc at all.
func (s *sampler) recheckRunning() {
	for _, t := range s.sel {
		if !t.idle && !t.holds {
			s.readState(t)
		}
	}
}

// close releases what the sampler keeps open.
func (s *sampler) close() {
	if s.stat != nil {
		s.stat.Close()
		s.stat = nil
	}
	for _, t := range s.threads {
		if t.state != nil {
			t.state.Close()
			t.state = nil
		}
	}
}

// take reads one sample into smp. ok is false when nothing could be read
// (every thread lost). With recheck, the states of the threads taken as
// running are read again once their stacks are (recheckRunning).
//
// In steady state a sample is one system call (readQuick): one vectored
// read of the GIL's words, every selected thread's current frame pointer,
// the pages each thread's last walk touched, and the current frame
// pointers again, in that order (the kernel copies the ranges in order):
// a thread whose pointer is the same before and after its pages was read
// consistently, and is walked over them. Pages a walk lacks are read in
// further rounds, each ending with the pointers again. A thread that the
// quick read cannot settle (its pointer moved under the read, its path to
// the current frame changed, an unreadable frame) is read the careful way
// (readSlow), in a handful of system calls more.
func (s *sampler) take(smp *Sample, recheck bool) (ok bool, err error) {
	var frozen *ptrace.Frozen
	if s.opt.Blocking {
		t0 := time.Now()
		frozen, err = s.p.Freeze()
		if err != nil {
			if s.gone() {
				return false, nil
			}
			return false, err
		}
		defer func() {
			frozen.Thaw()
			d := time.Since(t0)
			s.stats.Paused += d
			s.stats.MaxPause = max(s.stats.MaxPause, d)
		}()
	}
	s.pc.reset()
	// The threads sampled whether or not they hold the GIL: their frames
	// read with the GIL's words; then the holder if it was not among
	// them.
	s.sel = s.sel[:0]
	if !s.opt.GIL {
		for _, t := range s.threads {
			if s.opt.Idle || !t.idle {
				s.sel = append(s.sel, t)
			}
		}
	}
	s.seq++
	s.slow = s.slow[:0]
	// A thread whose stack the last sample had can keep it when no
	// other thread than the GIL's last holder took the GIL since: it
	// ran no Python code (cpython.GILWords). Such threads are read only
	// if the GIL's switch count read with the others moved; the last
	// holders of the last two samples are always read (a read of the
	// GIL's words may see the holder changed and not yet the count).
	fresh, maybe := s.sel, s.maybe[:0]
	if s.gilOK && s.switchOK {
		fresh = s.fresh[:0]
		for _, t := range s.sel {
			if t.goodAt == s.seq-1 && t.tstate != s.lastHolder && t.tstate != s.prev && s.sharesGIL(t) {
				maybe = append(maybe, t)
			} else {
				fresh = append(fresh, t)
			}
		}
		s.fresh = fresh
	}
	s.maybe = maybe
	st := s.readQuick(fresh, s.gilOK)
	if len(maybe) > 0 {
		if st.HasSwitch && st.Switch == s.switchNo {
			s.stats.CarriedOver += int64(len(maybe))
			again := maybe[:0]
			for _, t := range maybe {
				t.lost = ""
				if t.tstate == st.LastHolder {
					again = append(again, t)
				}
			}
			maybe = again
		}
		if len(maybe) > 0 {
			s.pc.reset() // (their pages are read between their pointers)
			s.readQuick(maybe, false)
		}
	}
	s.switchOK = st.HasSwitch
	s.switchNo, s.prev, s.lastHolder = st.Switch, s.lastHolder, st.LastHolder
	gil := st.Holder
	n := len(s.sel)
	for _, t := range s.threads {
		t.holds = gil != 0 && t.tstate == gil
		if t.holds && !slices.Contains(s.sel[:n], t) {
			s.sel = append(s.sel, t)
			s.slow = append(s.slow, t)
		}
	}
	if len(s.slow) > 0 {
		s.readSlow(s.slow)
	}
	if recheck {
		s.recheckRunning()
	}
	smp.Threads = smp.Threads[:0]
	read := 0
	s.vanished = 0
	for _, t := range s.sel {
		if t.lost == "vanished" {
			s.vanished++
		}
		if t.idle && !t.holds && !s.opt.Idle {
			continue // gone to sleep since the last look (recheckRunning)
		}
		ts := ThreadSample{TID: t.tid, Name: t.name, HoldsGIL: t.holds, Idle: t.idle && !t.holds}
		if t.lost != "" {
			s.stats.Lost[t.lost]++
			ts.Lost = t.lost
		} else {
			ts.Frames = t.resolved
			t.goodAt = s.seq
			read++
		}
		if ts.Lost == "" && len(ts.Frames) == 0 {
			continue // no Python code running: nothing to record
		}
		smp.Threads = append(smp.Threads, ts)
	}
	return read > 0 || len(smp.Threads) > 0 || len(s.threads) > 0, nil
}

// sampleSlice is the sampler thread's time slice (procfs.ShortSlice):
// the shortest the kernel gives.
const sampleSlice = 100 * time.Microsecond

// maxSleep bounds one sleep between samples: ctx's end is seen within it.
const maxSleep = 50 * time.Millisecond

// maxHintPages bounds the pages remembered per thread for the next sample.
const maxHintPages = 32

// maxWalkRounds bounds the rounds of a sample's walks.
const maxWalkRounds = 6

// topWords is where one read of a thread's current frame pointer went
// in a vectored read: the indexes of its segments in sampler.segs (-1:
// none) and their buffers.
type topWords struct {
	seg  [2]int
	word [2][8]byte
}

// appendTop appends the segments that read t's current frame pointer
// into w: the thread state's word, and for a two-hop path (3.11, 3.12:
// tstate->cframe->current_frame) the word of the intermediate struct the
// last read found (t.mid), if any.
func (s *sampler) appendTop(t *sampledThread, w *topWords, path []int) {
	w.seg = [2]int{-1, -1}
	w.seg[0] = len(s.segs)
	s.segs = append(s.segs, memory.Segment{Addr: t.tstate + uint64(path[0]), Buf: w.word[0][:]})
	if len(path) == 2 && t.mid != 0 {
		w.seg[1] = len(s.segs)
		s.segs = append(s.segs, memory.Segment{Addr: t.mid + uint64(path[1]), Buf: w.word[1][:]})
	}
}

// decodeTop returns the current frame pointer appendTop's segments read;
// ok is false when they do not tell it (a read failed, or the path's
// first hop is not t.mid any more: t.mid is then updated for the next
// sample).
func (s *sampler) decodeTop(t *sampledThread, w *topWords, path []int) (top uint64, ok bool) {
	if s.segs[w.seg[0]].Err != nil {
		return 0, false
	}
	v := memory.Order.Uint64(w.word[0][:])
	if len(path) == 1 || v == 0 {
		return v, true
	}
	if v != t.mid || w.seg[1] < 0 || s.segs[w.seg[1]].Err != nil {
		t.mid = v
		return 0, false
	}
	return memory.Order.Uint64(w.word[1][:]), true
}

// readQuick reads the threads ts in one vectored read per round (see
// take) and walks their stacks; the threads it cannot settle are left in
// s.slow. With gil the first read also reads the GIL's words, and
// readQuick returns what they say (holder, last holder, switch count).
func (s *sampler) readQuick(ts []*sampledThread, gil bool) (st cpython.GILState) {
	path := s.cs.TopPath()
	s.pending = s.pending[:0]
	s.segs = s.segs[:0]
	if gil {
		s.segs = s.gil.Segments(s.segs, &s.gilBuf)
	}
	ng := len(s.segs)
	// In address order, each group (the pointers before, the pages,
	// the pointers after): reads close to each other are one range of
	// the vectored read (see live.Process.ReadV), as thread states
	// often are.
	s.byAddr = append(s.byAddr[:0], ts...)
	if n := len(s.byAddr); n > 1 && s.byAddr[0].tstate > s.byAddr[n-1].tstate {
		slices.Reverse(s.byAddr) // the usual order, newest thread first: sorted now
	}
	slices.SortFunc(s.byAddr, func(a, b *sampledThread) int { return cmp.Compare(a.tstate, b.tstate) })
	for _, t := range s.byAddr {
		t.lost = ""
		s.appendTop(t, &t.before, path)
	}
	for _, t := range ts {
		s.addRanges(t)
	}
	s.sortClaims()
	for _, t := range s.byAddr {
		s.appendTop(t, &t.after, path)
	}
	if len(s.segs) == 0 {
		return st
	}
	memory.ReadV(s.m.r, s.segs)
	if gil {
		st, _ = s.gil.Read(s.segs[:ng])
	}
	s.storePages()
	for _, t := range ts {
		b, okb := s.decodeTop(t, &t.before, path)
		a, oka := s.decodeTop(t, &t.after, path)
		switch {
		case !okb || !oka || a != b:
			s.slow = append(s.slow, t)
		case b == 0 && s.cs.InEval(t.tstate, t.mid):
			// Caught entering the evaluation loop (3.11, 3.12): its
			// frame is not written yet. Read again.
			s.slow = append(s.slow, t)
		case b == 0:
			t.top = 0
			t.resolved, t.savedOK = t.resolved[:0], false
		case b == t.savedTop && s.unchanged(t):
			// The memory its last walk read is the same: so is its
			// stack.
			t.top = b
			s.stats.Unchanged++
		default:
			t.top = b
			s.pending = append(s.pending, t)
		}
	}
	for round := 1; ; round++ {
		s.pc.misses = s.pc.misses[:0]
		next := s.pending[:0]
		for _, t := range s.pending {
			switch err := s.walk(t, true); {
			case err == nil:
			case errors.Is(err, errMiss) && round < maxWalkRounds:
				next = append(next, t)
			default:
				s.slow = append(s.slow, t)
			}
		}
		s.pending = next
		if len(s.pending) == 0 {
			break
		}
		// The pages they lack, then their pointers again: the pages
		// of every round are read between a thread's first pointer
		// and its last.
		s.segs = s.segs[:0]
		s.addPages(s.pc.misses, true)
		s.sortClaims()
		for _, t := range s.pending {
			s.appendTop(t, &t.after, path)
		}
		memory.ReadV(s.m.r, s.segs)
		s.storePages()
		next = s.pending[:0]
		for _, t := range s.pending {
			if a, ok := s.decodeTop(t, &t.after, path); ok && a == t.top {
				next = append(next, t)
			} else {
				s.slow = append(s.slow, t)
			}
		}
		s.pending = next
	}
	s.pc.misses = s.pc.misses[:0]
	return st
}

// sharesGIL reports whether t runs under the GIL the sampler reads: every
// thread before 3.12, the first interpreter's from 3.12 (an interpreter
// may have its own).
func (s *sampler) sharesGIL(t *sampledThread) bool {
	return s.m.l.InterpCevalGil < 0 || len(s.interps) > 0 && t.interp == s.interps[0]
}

// walk walks t's stack from t.top over the page cache (recording the
// pages it lacks when record) into t.resolved, and remembers the pages it
// touched in t.hint.
func (s *sampler) walk(t *sampledThread, record bool) error {
	s.pc.record = record
	s.pc.touched, t.hint = t.hint, nil // adding to what earlier walks touched
	if s.pc.touched == nil {
		s.pc.touched = make([]pageRange, 0, 8)
	}
	s.pc.touchLost = false
	var err error
	t.frames, err = s.cs.Stack(t.top, s.depth, t.frames)
	t.hint, s.pc.touched = s.pc.touched, nil
	s.pc.record = false
	if err == nil || errors.Is(err, cpython.ErrTooDeep) {
		s.resolve(t)
		s.save(t, !s.pc.touchLost)
		return nil
	}
	t.savedOK = false
	return err
}

// maxSaved bounds the copy save keeps of one thread's ranges (the ten
// threads of profile_target.py read 24 KiB a sample in all on 2.7, 5 KiB
// on 3.13): a thousand threads keep at most 16 MiB.
const maxSaved = 16 << 10

// save keeps the bytes of the ranges t's walk read (t.hint, whole when
// whole), for unchanged.
func (s *sampler) save(t *sampledThread, whole bool) {
	t.savedOK, t.saved = false, t.saved[:0]
	if !whole {
		return
	}
	n := 0
	for _, h := range t.hint {
		n += h.hi - h.lo
	}
	if n > maxSaved {
		return // walked at every sample
	}
	for _, h := range t.hint {
		b := s.cachedRange(h)
		if b == nil {
			return
		}
		t.saved = append(t.saved, b...)
	}
	t.savedTop, t.savedOK = t.top, true
}

// unchanged reports whether the ranges t's last walk read hold, in this
// sample's pages, the bytes they held then: the walk, which reads only
// them (and the code objects, cached by address and read again every
// second, when saved copies are forgotten too), would find the same
// stack. A range this sample did not read is not the same.
func (s *sampler) unchanged(t *sampledThread) bool {
	if !t.savedOK {
		return false
	}
	rest := t.saved
	for _, h := range t.hint {
		b := s.cachedRange(h)
		if b == nil || len(rest) < len(b) || !bytes.Equal(rest[:len(b)], b) {
			return false
		}
		rest = rest[len(b):]
	}
	return len(rest) == 0
}

// cachedRange is the range h of the page cache's page, nil when the
// cache does not hold all of it.
func (s *sampler) cachedRange(h pageRange) []byte {
	pg, lo, hi := s.pc.page(h.base)
	if pg == nil || h.lo < lo || h.hi > hi || h.lo > h.hi {
		return nil
	}
	return pg[h.lo:h.hi]
}

// readSlow reads the threads ts afresh, the careful way: the page cache
// emptied (its pages were read before these threads' pointers), every
// thread's current frame pointer read hop by hop, the stacks walked in
// rounds of vectored reads, the pointers read again, and a thread whose
// pointer moved read again alone.
func (s *sampler) readSlow(ts []*sampledThread) {
	s.pc.reset()
	s.readTops(ts, false, false)
	s.walkAll(ts)
	if s.opt.Blocking {
		return
	}
	s.readTops(ts, true, false)
	for _, t := range ts {
		if t.lost == "" && t.topErr == nil && t.again != t.top {
			t.lost = "torn"
		}
		if t.lost == "torn" {
			t.lost = s.readThread(t)
		}
	}
}

// walkAll walks every thread's stack from t.top, in rounds: each round
// walks every unfinished thread over the pages read so far, noting the
// pages it lacks, then reads all of those in one vectored read. A stack
// that needs more rounds than maxWalkRounds is finished with plain reads.
func (s *sampler) walkAll(ts []*sampledThread) {
	s.pending = s.pending[:0]
	s.pc.misses = s.pc.misses[:0]
	for _, t := range ts {
		t.lost = ""
		switch {
		case t.topErr != nil:
			t.lost = "vanished"
		case t.top == 0 && s.cs.InEval(t.tstate, t.mid):
			t.lost = "torn" // caught entering the evaluation loop
		case t.top == 0:
			t.resolved, t.savedOK = t.resolved[:0], false
		default:
			s.pending = append(s.pending, t)
			s.pc.misses = append(s.pc.misses, t.top&^(pageSize-1))
		}
	}
	for round := 0; len(s.pending) > 0; round++ {
		s.segs = s.segs[:0]
		s.addPages(s.pc.misses, true)
		s.sortClaims()
		memory.ReadV(s.m.r, s.segs)
		s.storePages()
		s.pc.misses = s.pc.misses[:0]
		last := round == maxWalkRounds
		next := s.pending[:0]
		for _, t := range s.pending {
			err := s.walk(t, !last)
			if err == nil {
				continue
			}
			if !last && errors.Is(err, errMiss) {
				next = append(next, t)
				continue
			}
			t.lost = "torn"
		}
		s.pending = next
	}
	s.pc.misses = s.pc.misses[:0]
}

// readTops reads the current frame pointer of every thread in ts, hop by
// hop, one vectored read per hop: into t.top, or into t.again when again
// (t.topErr says when it could not be read). With gil, the first hop's
// read also reads the GIL's words, and readTops returns the holder.
func (s *sampler) readTops(ts []*sampledThread, again, gil bool) (holder uint64) {
	path := s.cs.TopPath()
	for _, t := range ts {
		t.ptr, t.topErr = t.tstate, nil
	}
	if len(ts) == 0 && !gil {
		return 0
	}
	for hop, off := range path {
		s.segs = s.segs[:0]
		s.segOwner = s.segOwner[:0]
		for _, t := range ts {
			if t.topErr != nil || t.ptr == 0 {
				continue
			}
			s.segs = append(s.segs, memory.Segment{Addr: t.ptr + uint64(off), Buf: t.word[:]})
			s.segOwner = append(s.segOwner, t)
		}
		if gil && hop == 0 {
			s.segs = s.gil.Segments(s.segs, &s.gilBuf)
		}
		if len(s.segs) == 0 {
			break
		}
		memory.ReadV(s.m.r, s.segs)
		if gil && hop == 0 {
			holder, _ = s.gil.Decode(s.segs[len(s.segOwner):])
		}
		for i, seg := range s.segs[:len(s.segOwner)] {
			t := s.segOwner[i]
			if seg.Err != nil {
				t.topErr = seg.Err
				continue
			}
			t.ptr = memory.Order.Uint64(t.word[:])
			if hop == 0 && len(path) == 2 {
				t.mid = t.ptr // for the next quick read
			}
		}
	}
	for _, t := range ts {
		if again {
			t.again = t.ptr
		} else {
			t.top = t.ptr
		}
	}
	return holder
}

// addPages appends to s.segs the reads of the pages at bases (with
// behind, also of the ones below them, see pageCache.behind) that the
// page cache lacks, or has only part of, claiming them in it; storePages
// settles them after the read.
func (s *sampler) addPages(bases []uint64, behind bool) {
	for _, base := range bases {
		lo := base
		if b := uint64(s.pc.behind) * pageSize; behind && base >= b {
			lo = base - b
		}
		for a := lo; a <= base; a += pageSize {
			pg, ok := s.pc.pages[a]
			if ok {
				if _, partial := s.pc.part[a]; a == base && pg != nil && partial && !slices.Contains(s.segBase, a) {
					s.claim(a, pg, 0, pageSize, false)
				}
				continue
			}
			if len(s.pc.used)+len(s.segPages) >= s.pc.maxPages {
				continue
			}
			if a != base && s.unreadable[a] {
				continue // read ahead of need, and known to fail
			}
			s.claim(a, s.pc.newPage(), 0, pageSize, true)
		}
	}
}

// addRanges appends to s.segs the reads of the ranges a thread's walks
// touched since the last reset (t.hint, one range per page: every frame
// object the thread ran in, before 3.11; its data stack's span from
// 3.11), widened to 64 bytes, and by topSlack above on the page of its
// top frame (from 3.11 a stack grows up in its data stack). Ranges of
// one page are read as one.
func (s *sampler) addRanges(t *sampledThread) {
	for _, h := range t.hint {
		lo, hi := h.lo&^63, min(pageSize, (h.hi+63)&^63)
		if s.pc.behind > 0 && h.base == t.top&^(pageSize-1) {
			hi = min(pageSize, hi+topSlack)
		}
		pg, ok := s.pc.pages[h.base]
		switch {
		case !ok:
			if len(s.pc.used)+len(s.segPages) < s.pc.maxPages {
				s.claim(h.base, s.pc.newPage(), lo, hi, true)
			}
		case pg != nil:
			if i := slices.Index(s.segBase, h.base); i >= 0 {
				seg := &s.segs[s.segFrom+i]
				olo := int(seg.Addr - h.base)
				lo, hi = min(lo, olo), max(hi, olo+len(seg.Buf))
				seg.Addr, seg.Buf = h.base+uint64(lo), pg[lo:hi]
			}
		}
	}
}

// untracked reads through a page cache without noting what it reads in
// its touched ranges: the code objects a walk decodes once.
type untracked struct{ c *pageCache }

func (u untracked) ReadAt(p []byte, addr uint64) (int, error) {
	t := u.c.touched
	u.c.touched = nil
	n, err := u.c.ReadAt(p, addr)
	u.c.touched = t
	return n, err
}

// topSlack is what the read of a thread's top page takes beyond what its
// last walk touched, for frames pushed since.
const topSlack = 512

// claim appends the read of bytes [lo, hi) of the page at base into pg
// (fresh: a page of the free list) to s.segs.
func (s *sampler) claim(base uint64, pg *[pageSize]byte, lo, hi int, fresh bool) {
	if len(s.segPages) == 0 {
		s.segFrom = len(s.segs)
	}
	s.pc.pages[base] = pg // claimed; set for real by storePages
	s.segs = append(s.segs, memory.Segment{Addr: base + uint64(lo), Buf: pg[lo:hi]})
	s.segPages = append(s.segPages, pg)
	s.segBase = append(s.segBase, base)
	s.segFresh = append(s.segFresh, fresh)
}

// sortClaims puts the pages claimed since the last storePages in address
// order (their segments, and what storePages keeps about each, alike),
// so that neighbouring pages are one range of the vectored read.
func (s *sampler) sortClaims() {
	if len(s.segPages) > 1 {
		sort.Sort((*claimOrder)(s))
	}
}

// claimOrder sorts a sampler's claimed pages by address.
type claimOrder sampler

func (c *claimOrder) Len() int           { return len(c.segPages) }
func (c *claimOrder) Less(i, j int) bool { return c.segBase[i] < c.segBase[j] }
func (c *claimOrder) Swap(i, j int) {
	c.segs[c.segFrom+i], c.segs[c.segFrom+j] = c.segs[c.segFrom+j], c.segs[c.segFrom+i]
	c.segPages[i], c.segPages[j] = c.segPages[j], c.segPages[i]
	c.segBase[i], c.segBase[j] = c.segBase[j], c.segBase[i]
	c.segFresh[i], c.segFresh[j] = c.segFresh[j], c.segFresh[i]
}

// storePages settles the pages claimed since the last call, read into
// s.segs: a page not readable is remembered as such, one read in part
// with its range.
func (s *sampler) storePages() {
	for i, pg := range s.segPages {
		seg, base := s.segs[s.segFrom+i], s.segBase[i]
		if seg.Err != nil {
			// Not readable whole: a read of it fails (nil page).
			s.pc.pages[base] = nil
			if s.segFresh[i] {
				s.pc.free = append(s.pc.free, pg)
			}
			if len(s.unreadable) < 4096 {
				s.unreadable[base] = true
			}
			continue
		}
		if lo, hi := int(seg.Addr-base), int(seg.Addr-base)+len(seg.Buf); lo == 0 && hi == pageSize {
			delete(s.pc.part, base)
		} else {
			s.pc.part[base] = uint32(lo)<<16 | uint32(hi)
		}
		if s.segFresh[i] {
			s.pc.used = append(s.pc.used, pg)
		}
	}
	s.pc.lastOK = false
	s.segPages, s.segBase, s.segFresh = s.segPages[:0], s.segBase[:0], s.segFresh[:0]
}

// readThread reads t's stack alone into t.resolved; it returns why it
// could not ("" when it could).
func (s *sampler) readThread(t *sampledThread) string {
	const tries = 2
	for try := 0; try < tries; try++ {
		s.pc.reset()
		// The thread state is read directly: its page is no use for
		// the frames.
		s.cs.SetReader(s.m.r)
		top, inEval, err := s.cs.TopFrame(t.tstate)
		s.cs.SetReader(s.pc)
		if err != nil {
			return "vanished"
		}
		if top == 0 && inEval {
			// Caught entering the evaluation loop (3.11, 3.12): its
			// frame is not written yet; paused (Blocking), it stays so.
			continue
		}
		if top == 0 {
			t.resolved, t.savedOK = t.resolved[:0], false
			return ""
		}
		t.frames, err = s.cs.Stack(top, s.depth, t.frames)
		if err != nil && !errors.Is(err, cpython.ErrTooDeep) {
			continue
		}
		// The thread's current frame is the same after the walk: the
		// stack did not change under it (without a pause, it may have).
		if !s.opt.Blocking {
			s.cs.SetReader(s.m.r)
			again, _, err := s.cs.TopFrame(t.tstate)
			s.cs.SetReader(s.pc)
			if err != nil {
				return "vanished"
			}
			if again != top {
				continue
			}
		}
		s.resolve(t)
		return ""
	}
	return "torn"
}

// resolve copies t.frames (innermost first) into t.resolved (outermost
// first). The saved copy of the last walk's memory no longer goes with
// the stack kept (walk saves it again).
func (s *sampler) resolve(t *sampledThread) {
	t.resolved, t.savedOK = t.resolved[:0], false
	for i := len(t.frames) - 1; i >= 0; i-- {
		f := &t.frames[i]
		t.resolved = append(t.resolved, SampledFrame{Function: f.Function, File: f.File, Line: f.Line})
	}
}

func (s *sampler) gone() bool {
	return s.p.Gone(nil) != nil
}
