package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/profile"
)

// recordHelp is record's help; the default format depends on whether the
// build has the HTML viewer.
func recordHelp() string {
	html := "html        one self-contained page (.html) with speedscope's interactive\n" +
		"              flame graph, that works offline: open it in a browser"
	def := profile.DefaultFormat()
	if def == profile.HTML {
		html += " (the\n              default: pyglass-PID-TIME.html)"
	} else {
		html += ". This\n              pyglass was built without the viewer, so the default is\n" +
			"              speedscope: " + profile.ViewerHint
	}
	ss := "speedscope  speedscope's JSON (.json): open it at speedscope.app or with\n" +
		"              the speedscope command line viewer"
	if def == profile.Speedscope {
		ss += " (the default:\n              pyglass-PID-TIME.json)"
	}
	return `Samples every thread's Python stack from the target's memory, --rate times a
second, and writes a profile: where the time goes. The target is never
paused, traced or written to (unless --blocking): a stack that changes while
it is read is read again, or counted as lost, never recorded wrong.

Sampling runs until --duration, the target's exit or Ctrl-C; the profile is
written in every case. With "-- COMMAND ARGS" pyglass starts the command and
profiles it until it exits. Durations are written like 4s, 2m, 1m30s.

Formats (--format, else from -o's extension):
  ` + html + `
  ` + ss + `
  pprof       gzipped protobuf (.pb.gz): go tool pprof, Grafana Pyroscope,
              Parca; labels thread, thread_id and pid on every sample
  collapsed   "frame;frame;frame count" lines (.txt): flamegraph.pl, inferno
  chrome      Chrome's trace event JSON (.trace.json): chrome://tracing,
              Perfetto, speedscope; a track per thread, calls in time order
Idle threads (blocked in the kernel) are left out unless --idle.

At the end a summary goes to stderr: samples, samples lost and why, the
rate achieved, and the functions with the most own and total time.`
}

func runRecord(ctx context.Context, args []string, io IO) ExitCode {
	def := profile.DefaultFormat()
	fs := newFlags("record", recordHelp(), io)
	out := fs.String("o", "", "output file (default: pyglass-PID-TIME"+def.Ext()+" in the current directory)")
	format := fs.String("format", "", "output format: html, speedscope, pprof, collapsed or chrome (default: from -o, else "+string(def)+")")
	rateFlag := fs.String("rate", "100", `samples per second, or "max" for as fast as pyglass can`)
	duration := fs.Duration("duration", 0, "stop after this long (default: until Ctrl-C or the target exits)")
	idle := fs.Bool("idle", false, "keep threads that are blocked in the kernel")
	gil := fs.Bool("gil", false, "keep only the thread holding the GIL")
	threads := fs.Bool("threads", false, "one tree per thread")
	subprocs := fs.Bool("subprocesses", false, "also profile the target's child processes (new ones within 100 ms), each labelled by its PID")
	blocking := fs.Bool("blocking", false, "pause the threads for each sample (consistent stacks; stops the target briefly)")
	top := fs.Int("top", 10, "functions listed in the summary")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	var cmdArgs []string
	for i, a := range args {
		if a == "--" {
			cmdArgs = args[i+1:]
			break
		}
	}
	if len(cmdArgs) > 0 {
		pos = pos[:len(pos)-len(cmdArgs)]
	}
	if len(pos) == 0 && len(cmdArgs) == 0 {
		fmt.Fprintf(io.Err, "pyglass record: missing PID or -- COMMAND\nUsage: pyglass record %s\n", lookup("record").args)
		return ExitUsage
	}
	if len(pos) > 0 && len(cmdArgs) > 0 {
		fmt.Fprintf(io.Err, "pyglass record: give PIDs or -- COMMAND, not both\n")
		return ExitUsage
	}
	rate, ok := parseRate(*rateFlag)
	if !ok {
		fmt.Fprintf(io.Err, "pyglass record: --rate takes a number of samples per second from 1 to 1000000, or max\n")
		return ExitUsage
	}
	var f profile.Format
	switch {
	case *format != "":
		var err error
		if f, err = profile.ParseFormat(*format); err != nil {
			fmt.Fprintf(io.Err, "pyglass record: %v\n", err)
			return ExitUsage
		}
	case *out != "":
		var ok bool
		if f, ok = profile.FormatFromPath(*out); !ok {
			f = def
		}
	default:
		f = def
	}
	// Said before sampling, not after. Only for a page: building the
	// viewer (a pass over its bundle) cost every other format 8 ms.
	if f == profile.HTML {
		if err := profile.ViewerErr(); err != nil {
			fmt.Fprintf(io.Err, "pyglass record: %s\nhint: %s, or write another format (--format speedscope)\n", oneLine(err.Error()), profile.ViewerHint)
			return ExitUsage
		}
	}

	var pids []int
	for _, s := range pos {
		pid, ok := parsePID(s, io)
		if !ok {
			return ExitUsage
		}
		pids = append(pids, pid)
	}
	// A profile is written at Ctrl-C from the first sample on.
	signalsReady(ctx)
	var child *exec.Cmd
	if len(cmdArgs) > 0 {
		child = exec.Command(cmdArgs[0], cmdArgs[1:]...)
		child.Stdin, child.Stdout, child.Stderr = os.Stdin, io.Out, io.Err
		// Ctrl-C at the terminal reaches the child too (same process
		// group): it ends, and so does the recording.
		if err := child.Start(); err != nil {
			fmt.Fprintf(io.Err, "pyglass record: starting %s: %v\n", cmdArgs[0], err)
			return ExitUsage
		}
		pids = []int{child.Process.Pid}
	}
	procs := make([]*pyglass.Process, len(pids))
	for i, pid := range pids {
		p, err := attachWhenPython(ctx, pid, child != nil)
		if err != nil {
			if child != nil {
				child.Process.Kill()
				child.Wait()
			}
			return fail(io, err)
		}
		warnTo(p, io)
		procs[i] = p
	}
	if *out == "" {
		*out = fmt.Sprintf("pyglass-%d-%s%s", pids[0], time.Now().Format("20060102-150405"), f.Ext())
	}

	start := time.Now()
	prof := profile.New(start, rate)
	prof.PerThread = *threads
	prof.Name = "pyglass record " + pidList(pids) + " at " + start.Format("2006-01-02 15:04:05")
	prof.Timeline = f == profile.Chrome
	opt := pyglass.SampleOptions{Rate: rate, Duration: *duration, Idle: *idle, GIL: *gil, Blocking: *blocking}
	rec := &recorder{ctx: ctx, opt: opt, prof: prof, start: start, io: io, seen: map[int]bool{}}
	for _, p := range procs {
		rec.add(p)
	}
	if *subprocs {
		rec.follow(pids)
	}
	mu := &rec.mu
	stopProgress := recordProgress(io, pids, mu, prof)
	rec.wait()
	stopProgress()
	stats, errs := rec.stats, rec.errs
	pids = rec.pids
	prof.Duration = time.Since(start)
	asked := prof.Rate
	var taken int64
	for _, s := range stats {
		if s != nil {
			taken = max(taken, s.Samples)
		}
	}
	if taken > 0 {
		// Weights in the profile (seconds) follow the rate achieved.
		prof.Rate = float64(taken) / prof.Duration.Seconds()
	}
	if child != nil {
		child.Wait()
	}

	code = ExitOK
	for _, err := range errs {
		if err != nil {
			code = fail(io, err)
		}
	}
	if err := writeProfile(*out, prof, f); err != nil {
		fmt.Fprintf(io.Err, "pyglass record: writing %s: %v\n", *out, err)
		return ExitUsage
	}
	printRecordSummary(io.Err, pids, prof, asked, stats, *top)
	if f == profile.HTML {
		if abs, err := filepath.Abs(*out); err == nil {
			*out = abs
		}
		fmt.Fprintf(io.Err, "profile written to %s (%s: open it in a browser)\n", *out, f)
	} else {
		fmt.Fprintf(io.Err, "profile written to %s (%s)\n", *out, f)
	}
	if prof.Total() == 0 {
		fmt.Fprintf(io.Err, "pyglass record: no Python stack was sampled (every thread idle? try --idle)\n")
	}
	return code
}

// recorder samples a set of processes, which --subprocesses grows, into
// one profile.
type recorder struct {
	ctx   context.Context
	opt   pyglass.SampleOptions
	prof  *profile.Profile
	start time.Time
	io    IO // warnings of the processes found later go to its Err

	mu     sync.Mutex // guards prof and the fields below
	wg     sync.WaitGroup
	seen   map[int]bool
	pids   []int
	stats  []*pyglass.SampleStats
	errs   []error
	frames []profile.Frame
	live   int // processes being sampled
}

// add starts sampling p.
func (r *recorder) add(p *pyglass.Process) {
	r.mu.Lock()
	i := len(r.pids)
	r.seen[p.PID()] = true
	r.pids = append(r.pids, p.PID())
	r.stats = append(r.stats, nil)
	r.errs = append(r.errs, nil)
	r.live++
	r.mu.Unlock()
	opt := r.opt
	if opt.Duration > 0 {
		// A process found later samples until the same end.
		opt.Duration -= time.Since(r.start)
		if opt.Duration <= 0 {
			r.mu.Lock()
			r.live--
			r.mu.Unlock()
			return
		}
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		st, err := p.Sample(r.ctx, opt, func(s *pyglass.Sample) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, t := range s.Threads {
				if t.Lost != "" {
					continue // counted in the summary's losses
				}
				r.frames = r.frames[:0]
				for _, fr := range t.Frames {
					r.frames = append(r.frames, profile.Frame{Function: fr.Function, File: fr.File, Line: fr.Line})
				}
				r.prof.Add(profile.Thread{PID: s.PID, TID: t.TID, Name: t.Name}, r.frames, s.Time)
			}
			return nil
		})
		if errors.Is(err, pyglass.ErrNoProcess) {
			// A child that ended as it was found.
			err = nil
		}
		r.mu.Lock()
		r.stats[i], r.errs[i] = st, err
		r.live--
		r.mu.Unlock()
	}()
}

// follow looks for new descendants of roots every 50 ms, until the
// sampling of every process has ended, and samples those that run Python.
func (r *recorder) follow(roots []int) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tries := map[int]int{}
		for {
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			r.mu.Lock()
			live := r.live
			r.mu.Unlock()
			if live == 0 {
				return
			}
			if r.opt.Duration > 0 && time.Since(r.start) >= r.opt.Duration {
				return
			}
			for _, root := range roots {
				kids, _ := pyglass.Descendants(root)
				for _, pid := range kids {
					r.mu.Lock()
					seen := r.seen[pid]
					r.mu.Unlock()
					// A child that is not Python yet (exec pending)
					// is tried again for a second.
					if seen || tries[pid] > 20 {
						continue
					}
					tries[pid]++
					p, err := pyglass.Attach(pid)
					if err != nil {
						continue
					}
					warnTo(p, r.io)
					r.add(p)
				}
			}
		}
	}()
}

func (r *recorder) wait() { r.wg.Wait() }

// parseRate parses --rate: a positive number, or "max" (returned as
// pyglass.MaxRate).
func parseRate(s string) (float64, bool) {
	if s == "max" {
		return pyglass.MaxRate, true
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || r < 1 || r > 1e6 {
		return 0, false
	}
	return r, true
}

// attachWhenPython attaches to pid; a process just started may not have
// loaded its interpreter yet: then it tries again for up to 5 s.
func attachWhenPython(ctx context.Context, pid int, fresh bool) (*pyglass.Process, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := pyglass.Attach(pid)
		if err == nil || !fresh || time.Now().After(deadline) {
			return p, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writeProfile writes prof to path, in full or not at all.
func writeProfile(path string, prof *profile.Profile, f profile.Format) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	werr := prof.Write(fh, f)
	if err := fh.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}

// recordProgress shows, on a terminal, how many samples were taken.
func recordProgress(io IO, pids []int, mu *sync.Mutex, prof *profile.Profile) (stop func()) {
	pr := progressTo(io)
	if pr == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				pr("")
				return
			case <-t.C:
				mu.Lock()
				n := prof.Total()
				mu.Unlock()
				pr(fmt.Sprintf("recording %s: %d stacks in %s (Ctrl-C to stop and write the profile)", pidList(pids), n, time.Since(start).Round(time.Second)))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func pidList(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}

func printRecordSummary(w io.Writer, pids []int, prof *profile.Profile, asked float64, stats []*pyglass.SampleStats, top int) {
	var samples, late int64
	lost := map[string]int64{}
	var cpu time.Duration
	exited := 0
	for _, s := range stats {
		if s == nil {
			continue
		}
		samples += s.Samples
		late += s.Late
		cpu += s.CPU
		for k, v := range s.Lost {
			lost[k] += v
		}
		if s.Exited {
			exited++
		}
	}
	secs := prof.Duration.Seconds()
	askedS := fmt.Sprintf("%.0f/s asked", asked)
	if asked >= pyglass.MaxRate {
		askedS = "as fast as possible"
	}
	fmt.Fprintf(w, "recorded %s for %s: %d samples (%.0f/s, %s), %d thread stacks\n",
		pidList(pids), prof.Duration.Round(time.Millisecond), samples, float64(samples)/max(secs, 1e-9), askedS, prof.Total())
	var lostParts []string
	var nlost int64
	for k, v := range lost {
		lostParts = append(lostParts, fmt.Sprintf("%d %s", v, k))
		nlost += v
	}
	sort.Strings(lostParts)
	if len(lostParts) > 0 {
		fmt.Fprintf(w, "lost: %d thread stacks (%.2f%%): %s\n", nlost, 100*float64(nlost)/float64(max(prof.Total()+nlost, 1)), strings.Join(lostParts, ", "))
	} else {
		fmt.Fprintf(w, "lost: none\n")
	}
	if late > 0 {
		fmt.Fprintf(w, "late: %d ticks skipped: sampling fell behind the rate asked (the machine is busy, or the rate is more than pyglass reaches)\n", late)
	}
	fmt.Fprintf(w, "pyglass's CPU: %s (%.1f%% of a core)\n", cpu.Round(time.Millisecond), 100*cpu.Seconds()/max(secs, 1e-9))
	var paused, maxPause time.Duration
	for _, s := range stats {
		if s != nil {
			paused += s.Paused
			maxPause = max(maxPause, s.MaxPause)
		}
	}
	if paused > 0 && samples > 0 {
		fmt.Fprintf(w, "--blocking: the target was paused %s in all (%.1f%% of the time), %s per sample, %s at most\n",
			paused.Round(time.Millisecond), 100*paused.Seconds()/max(secs, 1e-9), (paused / time.Duration(samples)).Round(time.Microsecond), maxPause.Round(time.Microsecond))
	}
	if exited > 0 {
		fmt.Fprintf(w, "the target exited\n")
	}
	total := prof.Total()
	if total == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%7s %7s  %s\n", "OWN", "TOTAL", "FUNCTION")
	for _, st := range prof.Top(top) {
		fmt.Fprintf(w, "%6.1f%% %6.1f%%  %s (%s)\n", 100*float64(st.Own)/float64(total), 100*float64(st.Total)/float64(total), st.Function, st.File)
	}
}
