package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/leak"
)

// runOptions are the leak.RunOptions of a report command. On a terminal, a
// report that takes more than a second shows how long it has been running
// on stderr until done is called.
func runOptions(p *pyglass.Process, timeout time.Duration, io IO) (opt leak.RunOptions, done func()) {
	opt = leak.RunOptions{Timeout: timeout}
	show := progressTo(io)
	if show == nil {
		return opt, func() {}
	}
	var mu sync.Mutex
	waiting := false // the exec's own line (waiting for the GIL) is up
	opt.Progress = func(s string) {
		mu.Lock()
		defer mu.Unlock()
		waiting = s != ""
		show(s)
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				mu.Lock()
				if !waiting {
					show(fmt.Sprintf("report running in process %d: %ds", p.PID(), int(time.Since(start).Seconds())))
				}
				mu.Unlock()
			}
		}
	}()
	return opt, func() {
		tick.Stop()
		close(stop)
		<-stopped
		if time.Since(start) >= time.Second {
			show("")
		}
	}
}

// reportFail prints a report error; a feature the target lacks is a
// usage-level problem of that target (exit 3).
func reportFail(io IO, err error) ExitCode {
	var se *leak.ScriptError
	if errors.As(err, &se) {
		fmt.Fprintf(io.Err, "pyglass: %s\n", oneLine(se.Msg))
		if se.Kind == "usage" {
			return ExitUsage
		}
		return ExitNotPython
	}
	return fail(io, err)
}

func reportFlags(name, help string, io IO) (*flag.FlagSet, *bool, *time.Duration) {
	fs := newFlags(name, help, io)
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long (exit 5)")
	return fs, asJSON, timeout
}

const garbageHelp = `Reports the objects in gc.garbage: what the collector found unreachable but
could not free (on Python 2, cycles of objects with __del__). Grouped by type,
most first: count, shallow size (sum of sys.getsizeof), retained size (their
own size plus what only they keep alive, each object counted once), example
reprs, one example reference cycle, and, when 'pyglass trace start' was run
before the objects were made, the source lines that created them.
Nothing is kept alive by the report; gc flags are restored.`

func runGarbage(ctx context.Context, args []string, io IO) ExitCode {
	fs, asJSON, timeout := reportFlags("garbage", garbageHelp, io)
	collect := fs.Bool("collect", false, "run a full collection first")
	saveall := fs.Bool("saveall", false, "(3.x) keep every cycle one collection finds (gc.DEBUG_SAVEALL), report them, then let them be freed")
	limit := fs.Int("limit", leak.DefaultExamples, "example reprs per type (0: none)")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass garbage: one PID expected\n")
		return ExitUsage
	}
	if *limit < 0 {
		fmt.Fprintf(io.Err, "pyglass garbage: --limit must be 0 or more\n")
		return ExitUsage
	}
	p, code, ok := attach(ctx, pos, io, "garbage")
	if !ok {
		return code
	}
	l := *limit
	if l == 0 {
		l = -1
	}
	run, done := runOptions(p, *timeout, io)
	r, err := leak.Garbage(ctx, p, leak.GarbageOptions{Collect: *collect, SaveAll: *saveall, Limit: l}, run)
	done()
	if err != nil {
		return reportFail(io, err)
	}
	if *asJSON {
		writeJSON(io.Out, r)
	} else {
		leak.RenderGarbage(io.Out, r)
	}
	return ExitOK
}

const objectsHelp = `Counts the live objects tracked by the garbage collector (containers and
instances), by type: count and total size (sys.getsizeof), most numerous
first. With --diff DURATION, takes two censuses DURATION apart and reports
the types that grew (count and bytes), like objgraph.show_growth.

By default the census walks the object graph from the program's roots
(modules, the other threads' stacks, classes, gc.garbage, the young
generations) a few milliseconds at a time, so the target's threads keep
running: it never holds the GIL for long, whatever the heap's size (about
1-3 s per million objects). It misses objects that only C code
references and cycles waiting for the collector; on Python 3.11 and 3.12
also objects that only other threads' running functions hold, once they
are out of the young generations (reading those variables there would
keep them alive). --all counts every tracked object
with one gc.get_objects() call instead: exact, faster, but the target's
threads wait for the whole call (15-60 ns per object: 50 ms and more past
a million objects).

With --paths CLASS, reports who keeps the instances of CLASS alive, the
first line naming the holder that retains most ("app.CACHE retains 212.0
MiB (holds 41,200 of the 41,210 Session instances, 100 %)"): for up to
--limit holders (a module global, a class attribute, gc.garbage, or a
variable of a function another thread runs: 'thread 4242 "worker": grow()
local buf'; before 3.11 without the variable's name, not on 3.11 and 3.12),
how many of the instances each reaches, a shortest reference path from it
to one, e.g. "app.CACHE (dict, 41210 items) ['k1'] -> app.Session", and
what it retains: the sizes of the objects nothing else named (modules,
classes, gc.garbage, other threads' variables) reaches without passing
through it (C code is not seen, so it is an upper bound). A module-level
holder is looked for first. Searched in small steps like the census (two
walks of the heap per holder for the retained size). With --diff
DURATION --paths, the growth report is followed by the holders of the (up to
5) classes that grew most.`

func runObjects(ctx context.Context, args []string, io IO) ExitCode {
	fs, asJSON, timeout := reportFlags("objects", objectsHelp, io)
	top := fs.Int("top", 20, "show the N most numerous types (0: all)")
	diff := fs.Duration("diff", 0, "report growth over this duration (e.g. 30s)")
	all := fs.Bool("all", false, "count every tracked object with gc.get_objects (exact; holds the GIL for the whole call)")
	var paths pathsFlag
	fs.Var(&paths, "paths", "report who keeps the instances of a class alive: --paths CLASS (module.Class, or Class); with --diff, of the classes that grew")
	limit := fs.Int("limit", leak.DefaultHolders, "--paths: the number of holders to find")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if *top < 0 || *diff < 0 {
		fmt.Fprintf(io.Err, "pyglass objects: --top and --diff must not be negative\n")
		return ExitUsage
	}
	if paths.set && paths.typ == "" && len(pos) == 2 {
		paths.typ, pos = pos[1], pos[:1] // --paths CLASS
	}
	if paths.set && (*limit < 1 || *all || (*diff > 0) == (paths.typ != "") || (paths.typ != "" && !leak.ValidTypeName(paths.typ))) {
		fmt.Fprintf(io.Err, "pyglass objects: --paths takes a class name (module.Class or Class), or none with --diff; --limit 1 or more; not with --all\n")
		return ExitUsage
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass objects: one PID expected\n")
		return ExitUsage
	}
	p, code, ok := attach(ctx, pos, io, "objects")
	if !ok {
		return code
	}
	if paths.set && *diff > 0 {
		r, err := leak.GrowthWithPaths(ctx, p, *diff, leak.ObjectsOptions{All: *all}, *limit, leak.RunOptions{Timeout: *timeout, Progress: progressTo(io)}, io.Err)
		if err != nil {
			return reportFail(io, err)
		}
		return output(io, *asJSON, r, func() { leak.RenderGrowthPaths(io.Out, r, *top) })
	}
	if paths.set {
		run, done := runOptions(p, *timeout, io)
		r, err := leak.Paths(ctx, p, leak.PathsOptions{Type: paths.typ, Limit: *limit}, run)
		done()
		if err != nil {
			return reportFail(io, err)
		}
		return output(io, *asJSON, r, func() { leak.RenderPaths(io.Out, r) })
	}
	opts := leak.ObjectsOptions{Top: *top, All: *all}
	if *diff > 0 {
		// The countdown goes to stderr, where it never mixes with the
		// report; on a terminal it redraws one line.
		g, err := leak.ObjectsGrowth(ctx, p, *diff, opts, leak.RunOptions{Timeout: *timeout, Progress: progressTo(io)}, io.Err)
		if err != nil {
			return reportFail(io, err)
		}
		if *asJSON {
			writeJSON(io.Out, g)
		} else {
			leak.RenderGrowth(io.Out, g, *top)
		}
		return ExitOK
	}
	run, done := runOptions(p, *timeout, io)
	r, err := leak.Objects(ctx, p, opts, run)
	done()
	if err != nil {
		return reportFail(io, err)
	}
	if *asJSON {
		writeJSON(io.Out, r)
	} else {
		leak.RenderObjects(io.Out, r)
	}
	return ExitOK
}

const gcHelp = `Shows the garbage collector's state: enabled, thresholds, counts per
generation, collections / collected / uncollectable per generation (3.4+),
debug flags, and the length of gc.garbage.`

func runGC(ctx context.Context, args []string, io IO) ExitCode {
	fs, asJSON, timeout := reportFlags("gc", gcHelp, io)
	collect := fs.Bool("collect", false, "run a full collection first")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass gc: one PID expected\n")
		return ExitUsage
	}
	p, code, ok := attach(ctx, pos, io, "gc")
	if !ok {
		return code
	}
	run, done := runOptions(p, *timeout, io)
	r, err := leak.GC(ctx, p, leak.GCOptions{Collect: *collect}, run)
	done()
	if err != nil {
		return reportFail(io, err)
	}
	if *asJSON {
		writeJSON(io.Out, r)
	} else {
		leak.RenderGC(io.Out, r)
	}
	return ExitOK
}

const traceHelp = `Turns allocation tracing (tracemalloc) on or off inside the target, or says
whether it is on and what it costs in memory. While it is on, 'pyglass
garbage' shows where the unreclaimable objects were created. Python 2.7 has
no tracemalloc.

'trace top' lists tracemalloc's live allocations grouped by line (default),
file or traceback (--by): size and count, largest first, like
tracemalloc's Snapshot.statistics. With --diff DURATION it takes two such
reports DURATION apart and lists the groups that grew, most first (like
Snapshot.compare_to): the lines that allocated a leak's growth. If
tracemalloc is off, top starts it (with --frames frames; 10 for --by
traceback) and says so: only what is allocated from then on is traced, so
use --diff, or run top again later; 'pyglass trace stop PID' stops it.
By default top walks the objects reachable from the program's roots a few
milliseconds at a time, as 'objects' does, and asks tracemalloc where each
was allocated, sizes by sys.getsizeof: an estimate (memory that is no
object, such as a list's item array grown by later appends, is counted where
its object was made). --exact reads every traced block with one call of
_tracemalloc._get_traces instead: exact, but the target's threads wait for
the whole call, 2-5 us per traced block (4 to 8 s for 2 million blocks).
On Python 3.11 tracemalloc cannot say where instances of Python classes were
allocated (a CPython bug): the walk counts them as untraced, --exact sees them.`

func runTrace(ctx context.Context, args []string, io IO) ExitCode {
	fs, asJSON, timeout := reportFlags("trace", traceHelp, io)
	frames := fs.Int("frames", 1, "frames to record per allocation (start; top when it starts tracing)")
	by := fs.String("by", "line", "top: group by line, file or traceback")
	diff := fs.Duration("diff", 0, "top: report the growth over this duration (e.g. 30s)")
	limit := fs.Int("limit", 10, "top: show the N largest groups (0: all)")
	exact := fs.Bool("exact", false, "top: read every traced block in one call (exact; holds the GIL for the whole call)")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 2 {
		fmt.Fprintf(io.Err, "pyglass trace: expected start|stop|status|top and a PID\nUsage: pyglass trace %s\n", lookup("trace").args)
		return ExitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	action := leak.TraceAction(pos[0])
	switch action {
	case leak.TraceStart, leak.TraceStop, leak.TraceStatus:
		for _, f := range []string{"by", "diff", "limit", "exact"} {
			if set[f] {
				fmt.Fprintf(io.Err, "pyglass trace: --%s is for 'trace top'\n", f)
				return ExitUsage
			}
		}
	case "top":
	default:
		fmt.Fprintf(io.Err, "pyglass trace: the action is start, stop, status or top, not %q\n", pos[0])
		return ExitUsage
	}
	if *frames < 1 || *frames > leak.MaxTraceFrames {
		fmt.Fprintf(io.Err, "pyglass trace: --frames must be between 1 and %d\n", leak.MaxTraceFrames)
		return ExitUsage
	}
	if action == "top" {
		grouping := leak.TraceGrouping(*by)
		switch grouping {
		case leak.ByLine, leak.ByFile, leak.ByTraceback:
		default:
			fmt.Fprintf(io.Err, "pyglass trace: --by is line, file or traceback, not %q\n", *by)
			return ExitUsage
		}
		if *diff < 0 || *limit < 0 {
			fmt.Fprintf(io.Err, "pyglass trace: --diff and --limit must not be negative\n")
			return ExitUsage
		}
		n := *frames
		if grouping == leak.ByTraceback && !set["frames"] {
			n = 10
		}
		return runTraceTop(ctx, pos[1:], io, leak.TraceTopOptions{By: grouping, Frames: n, Exact: *exact}, *diff, *limit, *asJSON, *timeout)
	}
	p, code, ok := attach(ctx, pos[1:], io, "trace")
	if !ok {
		return code
	}
	run, done := runOptions(p, *timeout, io)
	r, err := leak.Trace(ctx, p, leak.TraceOptions{Action: action, Frames: *frames}, run)
	done()
	if err != nil {
		return reportFail(io, err)
	}
	if *asJSON {
		writeJSON(io.Out, r)
	} else {
		leak.RenderTrace(io.Out, r)
	}
	return ExitOK
}

func runTraceTop(ctx context.Context, pos []string, io IO, opts leak.TraceTopOptions, diff time.Duration, limit int, asJSON bool, timeout time.Duration) ExitCode {
	p, code, ok := attach(ctx, pos, io, "trace")
	if !ok {
		return code
	}
	started := func(yes bool, frames int) {
		if yes {
			fmt.Fprintf(io.Err, "pyglass: tracemalloc was not tracing: started it (%d frames); it costs the process memory and time until 'pyglass trace stop %d'\n", frames, p.PID())
		}
	}
	if diff > 0 {
		g, err := leak.TraceTopGrowth(ctx, p, diff, opts, leak.RunOptions{Timeout: timeout, Progress: progressTo(io)}, io.Err)
		if err != nil {
			return reportFail(io, err)
		}
		started(g.Started, g.Frames)
		return output(io, asJSON, g, func() { leak.RenderTraceGrowth(io.Out, g, limit) })
	}
	run, done := runOptions(p, timeout, io)
	r, err := leak.TraceTop(ctx, p, opts, run)
	done()
	if err != nil {
		return reportFail(io, err)
	}
	started(r.Started, r.Frames)
	return output(io, asJSON, r, func() { leak.RenderTraceTop(io.Out, r, limit) })
}

// output prints v as JSON when asJSON, else calls render.
func output(io IO, asJSON bool, v any, render func()) ExitCode {
	if asJSON {
		writeJSON(io.Out, v)
	} else {
		render()
	}
	return ExitOK
}

// pathsFlag is objects' --paths: alone (with --diff), --paths CLASS (the
// class as the next argument) or --paths=CLASS.
type pathsFlag struct {
	set bool
	typ string
}

func (p *pathsFlag) String() string { return p.typ }

func (p *pathsFlag) Set(s string) error {
	p.set = true
	if s != "true" {
		p.typ = s
	}
	return nil
}

func (p *pathsFlag) IsBoolFlag() bool { return true }
