package pyglass

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/memory"
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

// Sample is every selected thread's stack at one instant. Sample passes
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
}

// Sample reads every Python thread's stack rate times a second and calls
// fn with each sample, until opt.Duration, ctx's end, the target's exit
// or an error from fn (returned as is). Without opt.Blocking the target
// is never paused, traced or written to: a stack that changes while it is
// read is read again, and counted as lost if it changes every time, never
// recorded wrong.
func (p *Process) Sample(ctx context.Context, opt SampleOptions, fn func(*Sample) error) (*SampleStats, error) {
	if p.proc.Zombie {
		return nil, errorf(ErrNotPython, "", "process %d is a zombie", p.pid)
	}
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
	m, err := p.openMemory()
	if err != nil {
		return nil, err
	}
	defer m.close()

	s := &sampler{p: p, m: m, opt: opt, depth: depth, pc: newReusablePageCache(m.r)}
	s.cs = cpython.NewSampler(s.pc, m.l)
	stats := &SampleStats{Lost: map[string]int64{}}
	s.stats = stats
	if err := s.refreshThreads(true); err != nil {
		return nil, err
	}
	if !opt.Idle {
		s.refreshKernel()
	}

	cpu0 := procfs.SelfCPU()
	start := time.Now()
	next := start
	var end time.Time
	if opt.Duration > 0 {
		end = start.Add(opt.Duration)
	}
	lastThreads, lastForget, lastKernel := start, start, start
	sample := &Sample{PID: p.pid}
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
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return stats, nil
			case <-t.C:
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
			s.cs.Forget()
			lastForget = now
		}
		if now.Sub(lastThreads) >= 100*time.Millisecond {
			if err := s.refreshThreads(now.Sub(lastForget) < interval); err != nil {
				if s.gone() {
					stats.Exited = true
					return stats, nil
				}
				return stats, err
			}
			lastThreads = now
		}
		if !opt.Idle && now.Sub(lastKernel) >= 10*time.Millisecond {
			s.refreshKernel()
			lastKernel = now
		}
		sample.Time = now
		ok, err := s.take(sample)
		if err != nil {
			return stats, err
		}
		if !ok {
			if s.gone() {
				stats.Exited = true
				return stats, nil
			}
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
}

type sampler struct {
	p       *Process
	m       *memoryView
	opt     SampleOptions
	depth   int
	pc      *reusablePageCache
	cs      *cpython.Sampler
	stats   *SampleStats
	threads []*sampledThread
	interps []uint64
	names   map[uint64]string // thread_id -> name, from the last full refresh
}

// refreshThreads reads the interpreters' thread lists again; names are
// read again when withNames.
func (s *sampler) refreshThreads(withNames bool) error {
	_, toHost, nsTIDs, err := s.p.kernelView()
	if err != nil {
		return err
	}
	rd := newPageCache(s.m.r)
	interps, err := cpython.FindInterpreters(rd, s.m.img, s.m.l)
	for try := 0; err != nil && try < 5; try++ {
		time.Sleep(time.Millisecond)
		rd = newPageCache(s.m.r)
		interps, err = cpython.FindInterpreters(rd, s.m.img, s.m.l)
	}
	if err != nil {
		return s.p.goneOr(&Error{Kind: ErrNotPython, Msg: fmt.Sprintf("process %d: cannot find the Python interpreter in memory", s.p.pid), Err: err})
	}
	old := map[uint64]*sampledThread{}
	for _, t := range s.threads {
		old[t.tstate] = t
	}
	var threads []*sampledThread
	for _, interp := range interps {
		ts, _ := cpython.Threads(rd, s.m.l, interp, cpython.ThreadOptions{Image: &s.m.img, TIDs: nsTIDs, SkipNames: !withNames && s.names != nil})
		for _, t := range ts {
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
	s.threads, s.interps = threads, interps
	return nil
}

// refreshKernel reads each thread's scheduler state: a thread blocked in
// the kernel is idle.
func (s *sampler) refreshKernel() {
	pr := procfs.New(s.p.pid)
	for _, t := range s.threads {
		if t.tid == 0 {
			t.idle = false
			continue
		}
		st, err := pr.TaskStat(t.tid)
		if err != nil {
			continue
		}
		t.idle = st.State != 'R'
	}
}

// take reads one sample into smp. ok is false when nothing could be read
// (every thread lost).
func (s *sampler) take(smp *Sample) (ok bool, err error) {
	var frozen *ptrace.Frozen
	if s.opt.Blocking {
		frozen, err = s.p.freeze()
		if err != nil {
			if s.gone() {
				return false, nil
			}
			return false, err
		}
		defer frozen.Thaw()
	}
	s.pc.reset()
	var gil uint64
	if len(s.interps) > 0 {
		gil, _ = cpython.GILHolder(s.pc, s.m.img, s.m.l, s.interps[0])
	}
	smp.Threads = smp.Threads[:0]
	read := 0
	for _, t := range s.threads {
		holds := gil != 0 && t.tstate == gil
		if s.opt.GIL && !holds {
			continue
		}
		if !s.opt.Idle && !holds && t.idle {
			continue
		}
		ts := ThreadSample{TID: t.tid, Name: t.name, HoldsGIL: holds, Idle: t.idle && !holds}
		if lost := s.readThread(t); lost != "" {
			s.stats.Lost[lost]++
			ts.Lost = lost
		} else {
			ts.Frames = t.resolved
			read++
		}
		if ts.Lost == "" && len(ts.Frames) == 0 {
			continue // no Python code running: nothing to record
		}
		smp.Threads = append(smp.Threads, ts)
	}
	return read > 0 || len(smp.Threads) > 0 || len(s.threads) > 0, nil
}

// readThread reads t's stack into t.resolved; it returns why it could not
// ("" when it could).
func (s *sampler) readThread(t *sampledThread) string {
	const tries = 3
	for try := 0; try < tries; try++ {
		s.pc.reset()
		top, err := s.cs.TopFrame(t.tstate)
		if err != nil {
			return "vanished"
		}
		if top == 0 {
			t.resolved = t.resolved[:0]
			return ""
		}
		t.frames, err = s.cs.Stack(top, s.depth, t.frames)
		if err != nil && !errors.Is(err, cpython.ErrTooDeep) {
			continue
		}
		// The thread's current frame is the same after the walk: the
		// stack did not change under it (without a pause, it may have).
		if !s.opt.Blocking {
			s.pc.reset()
			again, err := s.cs.TopFrame(t.tstate)
			if err != nil {
				return "vanished"
			}
			if again != top {
				continue
			}
		}
		if s.resolve(t) {
			return ""
		}
	}
	return "torn"
}

// resolve names t.frames (innermost first) into t.resolved (outermost
// first).
func (s *sampler) resolve(t *sampledThread) bool {
	t.resolved = t.resolved[:0]
	for i := len(t.frames) - 1; i >= 0; i-- {
		f := t.frames[i]
		c, err := s.cs.Code(f.Code)
		if err != nil {
			return false
		}
		t.resolved = append(t.resolved, SampledFrame{Function: c.Function, File: c.File, Line: f.Line})
	}
	return true
}

func (s *sampler) gone() bool {
	return s.p.goneOr(nil) != nil
}

// reusablePageCache is a page cache for one read of one thread, emptied by
// reset without freeing its pages, so that sampling allocates nothing in
// its steady state.
type reusablePageCache struct {
	r     memory.Reader
	pages map[uint64]*[pageSize]byte
	free  []*[pageSize]byte
	used  []*[pageSize]byte
}

// maxReusedPages bounds the pages one read keeps.
const maxReusedPages = 256

func newReusablePageCache(r memory.Reader) *reusablePageCache {
	return &reusablePageCache{r: r, pages: map[uint64]*[pageSize]byte{}}
}

func (c *reusablePageCache) reset() {
	clear(c.pages)
	c.free = append(c.free, c.used...)
	c.used = c.used[:0]
}

// ReadAt implements memory.Reader.
func (c *reusablePageCache) ReadAt(p []byte, addr uint64) (int, error) {
	if end := addr + uint64(len(p)); end < addr || len(p) > 4*pageSize {
		return c.r.ReadAt(p, addr)
	}
	n := 0
	for n < len(p) {
		a := addr + uint64(n)
		base := a &^ (pageSize - 1)
		pg, ok := c.pages[base]
		if !ok {
			if len(c.used) >= maxReusedPages {
				m, err := c.r.ReadAt(p[n:], a)
				return n + m, err
			}
			if k := len(c.free); k > 0 {
				pg, c.free = c.free[k-1], c.free[:k-1]
			} else {
				pg = new([pageSize]byte)
			}
			if k, err := c.r.ReadAt(pg[:], base); err != nil || k != pageSize {
				c.free = append(c.free, pg)
				pg = nil
			} else {
				c.used = append(c.used, pg)
			}
			c.pages[base] = pg
		}
		if pg == nil {
			m, err := c.r.ReadAt(p[n:], a)
			if n > 0 && m == 0 && errors.Is(err, memory.ErrFault) {
				err = fmt.Errorf("reading %#x: %w", a, memory.ErrShortRead)
			}
			return n + m, err
		}
		n += copy(p[n:], pg[a-base:])
	}
	return n, nil
}
