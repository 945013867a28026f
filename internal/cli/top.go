package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/profile"
)

const topHelp = `A live view of where the process spends its time, like top: the functions
with the most samples over the last second and since the start, sampled from
memory as record does (the target is never paused or written to).

On a terminal, keys: s sorts by own time, total time or name; t shows one
thread, then the next, then all again; i keeps or drops idle threads; p
pauses the display (sampling goes on); r resets the counts; q or Ctrl-C
quits. Piped, it prints a table every --interval until --duration or Ctrl-C.

OWN is the share of samples in which the function itself was running (the
innermost frame), TOTAL the share in which it was on the stack. The header
says how often some thread held the GIL, and which.`

// topState is what the sampler and the view share.
type topState struct {
	mu       sync.Mutex
	interval *profile.Tally // the current interval
	last     *profile.Tally // the last complete interval
	total    *profile.Tally // since the start (or the last reset)
	threads  map[int]string // tid -> name, seen so far
	holders  map[int]int64  // tid -> stacks holding the GIL, since start
	filter   int            // only this thread when non-zero
	idle     bool
	samples  int64     // in the current interval
	opened   time.Time // when the current interval began (zero: no sample yet)
	lastRate float64   // samples a second in the last interval
	lost     int64
	started  time.Time
	version  string
	err      error
	done     bool
	frames   []profile.Frame
}

func newTopState(idle bool) *topState {
	return &topState{interval: profile.NewTally(), last: profile.NewTally(), total: profile.NewTally(),
		threads: map[int]string{}, holders: map[int]int64{}, idle: idle, started: time.Now()}
}

func (st *topState) add(s *pyglass.Sample) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.opened.IsZero() {
		st.opened = time.Now() // the first interval begins with the first sample, not before the attach
	}
	st.samples++
	for _, t := range s.Threads {
		if t.Lost != "" {
			st.lost++
			continue
		}
		st.threads[t.TID] = t.Name
		if t.HoldsGIL {
			st.holders[t.TID]++
		}
		if st.filter != 0 && t.TID != st.filter {
			continue
		}
		if !st.idle && t.Idle {
			continue
		}
		st.frames = st.frames[:0]
		for _, f := range t.Frames {
			st.frames = append(st.frames, profile.Frame{Function: f.Function, File: f.File, Line: f.Line})
		}
		st.interval.Add(st.frames, t.HoldsGIL)
		st.total.Add(st.frames, t.HoldsGIL)
	}
}

// tick closes the current interval, at now: its rate is over its own
// length (--interval, or less for the last one, cut by Ctrl-C).
func (st *topState) tick(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.last, st.interval = st.interval, st.last
	st.interval.Reset()
	if d := now.Sub(st.opened); d > 0 && !st.opened.IsZero() {
		st.lastRate = float64(st.samples) / d.Seconds()
	}
	st.samples, st.opened = 0, now
}

// open says how long the current interval has been open.
func (st *topState) open(now time.Time) time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	return now.Sub(st.opened)
}

func (st *topState) reset() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.interval.Reset()
	st.last.Reset()
	st.total.Reset()
	clear(st.holders)
	st.started = time.Now()
}

// nextThread moves the filter to the next thread seen (then back to all).
func (st *topState) nextThread() {
	st.mu.Lock()
	defer st.mu.Unlock()
	tids := make([]int, 0, len(st.threads))
	for tid := range st.threads {
		tids = append(tids, tid)
	}
	sort.Ints(tids)
	next := 0
	for _, tid := range tids {
		if tid > st.filter {
			next = tid
			break
		}
	}
	st.filter = next
	st.interval.Reset()
	st.last.Reset()
	st.total.Reset()
}

// render draws the view: header and the table of the top functions.
func (st *topState) render(w io.Writer, p *pyglass.Process, by profile.SortBy, rows, width int, paused bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	fmt.Fprintf(w, "pyglass top - process %d, Python %s - %.0f samples/s, %d threads seen", p.PID(), st.version, st.lastRate, len(st.threads))
	if st.lost > 0 {
		fmt.Fprintf(w, ", %d stacks lost", st.lost)
	}
	fmt.Fprintln(w)
	if n := st.total.Stacks(); n > 0 {
		fmt.Fprintf(w, "GIL held in %.0f%% of the stacks", 100*float64(st.total.GIL())/float64(n))
		type h struct {
			tid int
			n   int64
		}
		var hs []h
		for tid, n := range st.holders {
			hs = append(hs, h{tid, n})
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].n > hs[j].n })
		for i, x := range hs {
			if i == 2 {
				break
			}
			fmt.Fprintf(w, "; thread %d %q holds it in %.0f%%", x.tid, st.threads[x.tid], 100*float64(x.n)/float64(n))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "no Python stack sampled yet")
	}
	filter := "all threads"
	if st.filter != 0 {
		filter = fmt.Sprintf("thread %d %q", st.filter, st.threads[st.filter])
	}
	sortName := map[profile.SortBy]string{profile.ByOwn: "own", profile.ByTotal: "total", profile.ByName: "name"}[by]
	state := ""
	if paused {
		state = " - PAUSED"
	}
	idle := "idle threads hidden"
	if st.idle {
		idle = "idle threads shown"
	}
	fmt.Fprintf(w, "%s, %s, sorted by %s, since %s%s\n\n", filter, idle, sortName, time.Since(st.started).Round(time.Second), state)
	fmt.Fprintf(w, "%6s %6s %9s %9s  %s\n", "OWN", "TOTAL", "OWN(all)", "TOT(all)", "FUNCTION")
	cur, all := st.last, st.total
	curN, allN := float64(max(cur.Stacks(), 1)), float64(max(all.Stacks(), 1))
	byFn := map[[2]string]profile.FuncStat{}
	for _, f := range cur.Top(0, by) {
		byFn[[2]string{f.Function, f.File}] = f
	}
	for _, f := range all.Top(rows, by) {
		c := byFn[[2]string{f.Function, f.File}]
		line := fmt.Sprintf("%5.1f%% %5.1f%% %8.1f%% %8.1f%%  %s (%s)", 100*float64(c.Own)/curN, 100*float64(c.Total)/curN,
			100*float64(f.Own)/allN, 100*float64(f.Total)/allN, f.Function, f.File)
		line = cutAt(line, width)
		fmt.Fprintln(w, line)
	}
}

func runTop(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("top", topHelp, io)
	rateFlag := fs.String("rate", "100", "samples per second")
	idle := fs.Bool("idle", false, "count idle threads too")
	gil := fs.Bool("gil", false, "sample only the thread holding the GIL")
	interval := fs.Duration("interval", time.Second, "refresh (and, piped, table) interval")
	duration := fs.Duration("duration", 0, "stop after this long (default: until q or Ctrl-C)")
	rows := fs.Int("rows", 20, "functions shown when piped (on a terminal: as many as fit)")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass top: one PID expected\n")
		return ExitUsage
	}
	rate, ok := parseRate(*rateFlag)
	if !ok {
		fmt.Fprintf(io.Err, "pyglass top: --rate takes a number of samples per second from 1 to 1000000, or max\n")
		return ExitUsage
	}
	if *interval < 100*time.Millisecond {
		fmt.Fprintf(io.Err, "pyglass top: --interval must be at least 100ms\n")
		return ExitUsage
	}
	p, code, ok := attach(ctx, pos, io, "top")
	if !ok {
		return code
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := newTopState(*idle)
	st.version = p.Info().Python.Version
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		// Idle threads are always sampled, so that i can show them.
		stats, err := p.Sample(ctx, pyglass.SampleOptions{Rate: rate, Duration: *duration, Idle: true, GIL: *gil}, func(s *pyglass.Sample) error {
			st.add(s)
			return nil
		})
		st.mu.Lock()
		st.err, st.done = err, true
		if err == nil && stats != nil && stats.Exited {
			st.err = fmt.Errorf("process %d exited", p.PID())
		}
		st.mu.Unlock()
	}()
	if io.IsTerm && io.InTerm {
		return topTerminal(ctx, cancel, p, st, *interval, sampled, io)
	}
	return topPiped(ctx, p, st, *interval, *rows, sampled, io)
}

func topPiped(ctx context.Context, p *pyglass.Process, st *topState, interval time.Duration, rows int, sampled chan struct{}, io IO) ExitCode {
	t := time.NewTicker(interval)
	defer t.Stop()
	printed := false
	for {
		select {
		case <-sampled:
			// The last interval, cut short by --duration or Ctrl-C, gets
			// its table unless it is too short to say anything and one
			// was printed already.
			if now := time.Now(); !printed || st.open(now) >= interval/10 {
				st.tick(now)
				st.render(io.Out, p, profile.ByOwn, rows, 0, false)
			}
			return topExit(st, io)
		case <-t.C:
			st.tick(time.Now())
			st.render(io.Out, p, profile.ByOwn, rows, 0, false)
			fmt.Fprintln(io.Out)
			printed = true
		}
	}
}

func topExit(st *topState, io IO) ExitCode {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err != nil {
		return fail(io, st.err)
	}
	return ExitOK
}
