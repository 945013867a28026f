package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

// The profiler bench (-profilers): pyglass record against the sampling
// profilers people use, each on the same CPU-bound target
// (testdata/profile_target.py: one hot thread 25 frames deep, 70 % of its
// time in a() and 30 % in b(), 9 idle threads) in the same run:
//   - Austin 3.7 (sid's package, scripts/sid-root.sh --bench), which
//     reads 3.8–3.13: on sid's python3.13, run in the target's mount
//     namespace and root (it attaches to nothing else);
//   - CPython 3.15's own sampling profiler (python3.15 -m
//     profiling.sampling attach -a), on sid's python3.15.
// pyglass runs on both targets. For each tool and rate (1 kHz, 10 kHz, as
// fast as it goes) it reports the samples per second achieved (a sample is
// every thread at one instant), the tool's CPU time per second and per
// sample, the target's work rate against the same target's without a
// profiler (wall, and per CPU-second of the target), the share found for
// a, and the samples the tool says it lost.

// profTool is one profiler.
type profTool struct {
	name string
	// argv returns the command line; rate is samples per second (0: as
	// fast as possible), out a file path as the tool sees it.
	argv func(env *Env, tg *Target, rate int, secs int, out string) []string
	// parse reads the tool's output: samples taken, lost, and the
	// collapsed stacks file for the share of a.
	parse func(out, stdout, stderr string) (samples, lost int64, err error)
}

func inRoot(tg *Target, argv ...string) []string {
	if tg.Interp.Chroot == "" {
		return argv
	}
	return append([]string{"nsenter", "-t", strconv.Itoa(tg.PID), "-m", "--", "chroot", tg.Interp.Chroot}, argv...)
}

var profTools = []profTool{
	{
		name: "pyglass record",
		argv: func(env *Env, tg *Target, rate, secs int, out string) []string {
			r := "max"
			if rate > 0 {
				r = strconv.Itoa(rate)
			}
			return []string{env.Pyglass, "record", strconv.Itoa(tg.PID), "--idle", "--rate", r, "--duration", fmt.Sprintf("%ds", secs), "-o", out}
		},
		parse: func(out, stdout, stderr string) (int64, int64, error) {
			m := regexp.MustCompile(`: (\d+) samples \(`).FindStringSubmatch(stderr)
			if m == nil {
				return 0, 0, fmt.Errorf("no sample count in %q", stderr)
			}
			n, _ := strconv.ParseInt(m[1], 10, 64)
			var lost int64
			if m := regexp.MustCompile(`lost: (\d+) thread stacks`).FindStringSubmatch(stderr); m != nil {
				lost, _ = strconv.ParseInt(m[1], 10, 64)
			}
			return n, lost, nil
		},
	},
	{
		name: "austin 3.7",
		argv: func(env *Env, tg *Target, rate, secs int, out string) []string {
			iv := "0"
			if rate > 0 {
				iv = strconv.Itoa(1000000 / rate)
			}
			return inRoot(tg, "austin", "-i", iv, "-x", strconv.Itoa(secs), "-p", strconv.Itoa(tg.PID), "-o", out)
		},
		parse: func(out, stdout, stderr string) (int64, int64, error) {
			// "Error rate : 0/8073 (0.00 %) invalid samples"
			m := regexp.MustCompile(`Error rate : \D*(\d+)/(\d+)`).FindStringSubmatch(stripANSI(stderr + stdout))
			if m == nil {
				return 0, 0, fmt.Errorf("no statistics in austin's output")
			}
			// Austin counts thread stacks: the target has 10 threads.
			lost, _ := strconv.ParseInt(m[1], 10, 64)
			n, _ := strconv.ParseInt(m[2], 10, 64)
			return n / profThreads, lost / profThreads, nil
		},
	},
	{
		name: "python3.15 -m profiling.sampling",
		argv: func(env *Env, tg *Target, rate, secs int, out string) []string {
			r := "1000khz"
			if rate > 0 {
				r = strconv.Itoa(rate)
			}
			return inRoot(tg, "/usr/bin/python3.15", "-m", "profiling.sampling", "attach", "-a", "-r", r, "-d", strconv.Itoa(secs), "--collapsed", "-o", out, strconv.Itoa(tg.PID))
		},
		parse: func(out, stdout, stderr string) (int64, int64, error) {
			s := stripANSI(stdout + stderr)
			m := regexp.MustCompile(`Captured (\d+) samples`).FindStringSubmatch(s)
			if m == nil {
				return 0, 0, fmt.Errorf("no sample count in %q", lastLines(s, 5))
			}
			n, _ := strconv.ParseInt(m[1], 10, 64)
			var lost int64
			if m := regexp.MustCompile(`(?i)error rate[^0-9]*([0-9.]+)%`).FindStringSubmatch(s); m != nil {
				pct, _ := strconv.ParseFloat(m[1], 64)
				lost = int64(pct * float64(n) / 100)
			}
			return n, lost, nil
		},
	},
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func stripANSI(s string) string { return ansi.ReplaceAllString(s, "") }

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// work is what the target reports of its progress.
type work struct {
	rounds int64
	cpu    time.Duration // the target's CPU time
	at     time.Time
	// busy is the target's own count of the seconds its hot thread spent
	// in a() and b(), read with rounds: rounds/busy is its speed, free of
	// the time between its report and our clock.
	busy float64
}

func (tg *Target) work() (work, error) {
	if _, err := io.WriteString(tg.stdin, "split\n"); err != nil {
		return work{}, err
	}
	l, err := tg.wait("SPLIT", 10*time.Second)
	if err != nil {
		return work{}, err
	}
	var a, b float64
	var w work
	if _, err := fmt.Sscanf(l, "SPLIT %f %f %d", &a, &b, &w.rounds); err != nil {
		return work{}, fmt.Errorf("parsing %q: %w", l, err)
	}
	w.at = time.Now()
	w.cpu = processCPU(tg.PID)
	w.busy = a + b
	return w, nil
}

// processCPU reads a process's user+system time from /proc/PID/stat.
func processCPU(pid int) time.Duration {
	st, err := procfs.New(pid).Stat()
	if err != nil {
		return 0
	}
	return time.Duration(st.UTime+st.STime) * 10 * time.Millisecond // USER_HZ is 100
}

// profThreads is the number of threads of testdata/profile_target.py.
const profThreads = 10

type profRow struct {
	target, tool, rate string
	samplesPerSec      float64
	cpuPerSec          float64 // fraction of a core
	cpuPerSample       time.Duration
	slowWall, slowCPU  float64 // target work rate lost, in %
	shareA             float64
	lostPct            float64
	note               string
}

// runProfilers runs the profiler bench on targets (labels); n runs each.
func runProfilers(root string, env *Env, n, secs int, dumpsOnly, flip bool, slowPairs int, only string, extra []testenv.Interp) {
	var onlyRE *regexp.Regexp
	if only != "" {
		onlyRE = regexp.MustCompile(only)
	}
	sid := testenv.SidRoot()
	targets := []testenv.Interp{
		{Label: "3.13-sid", Major: 3, Minor: 13, Path: "/usr/bin/python3.13", Chroot: sid},
		{Label: "3.15-sid", Major: 3, Minor: 15, Path: "/usr/bin/python3.15", Chroot: sid},
	}
	anchored := len(targets)
	targets = append(targets, extra...)
	if flip {
		runFlip(root, env, n, secs, onlyRE, targets)
		return
	}
	var rows []profRow
	var dumps []dumpRow
	var slows []slowRow
	for ti, in := range targets {
		withAnchors := ti < anchored
		if _, err := os.Stat(in.HostPath()); err != nil {
			fmt.Fprintf(os.Stderr, "bench: no %s (scripts/sid-root.sh --bench): skipped\n", in.HostPath())
			continue
		}
		tg, err := StartTarget(root, in, Profile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: starting %s: %v\n", in.Label, err)
			continue
		}
		for _, tool := range profTools {
			if dumpsOnly {
				break
			}
			if onlyRE != nil && !onlyRE.MatchString(in.Label+" "+tool.name) {
				continue
			}
			if !withAnchors && tool.name != "pyglass record" {
				continue
			}
			if slowPairs > 0 {
				if !tool.runsOn(in) {
					continue
				}
				r := measureSlowdown(env, tg, tool, 1000, slowPairs, 2)
				r.target = in.Label
				slows = append(slows, r)
				continue
			}
			if !tool.runsOn(in) {
				continue
			}
			if tool.name == "austin 3.7" {
				if _, err := os.Stat(filepath.Join(sid, "usr/bin/austin")); err != nil {
					fmt.Fprintf(os.Stderr, "bench: no austin in %s (scripts/sid-root.sh --bench): skipped\n", sid)
					continue
				}
			}
			for _, rate := range []int{1000, 10000, 0} {
				var rs []profRow
				for i := 0; i < n; i++ {
					fmt.Fprintf(os.Stderr, "bench: %s on %s at %s, run %d/%d\n", tool.name, in.Label, rateName(rate), i+1, n)
					r := profileOnce(env, tg, tool, rate, secs)
					r.target, r.tool, r.rate = in.Label, tool.name, rateName(rate)
					rs = append(rs, r)
				}
				rows = append(rows, medianRow(rs))
			}
		}
		if withAnchors && in.Minor <= 13 && slowPairs == 0 {
			if _, err := os.Stat(filepath.Join(sid, "usr/bin/austin")); err == nil {
				dumps = append(dumps, oneShotDumps(env, tg, n)...)
			}
		}
		tg.Stop()
	}
	if slowPairs == 0 && onlyRE == nil {
		dumps = append(dumps, hostDumps(root, env, sid, n)...)
	}
	if slowPairs > 0 {
		printSlowRows(os.Stdout, slows)
		return
	}
	printProfRows(os.Stdout, rows)
	if len(rows) > 0 {
		fmt.Printf("\nwake floor: a thread that only sleeps 1 ms at a time, waking 1,000 times a second, uses %.1f %% of a core here (the part of CPU at 1 kHz no profiler avoids)\n", 100*wakeFloor(2*time.Second))
	}
	if len(dumps) > 0 {
		fmt.Println()
		printDumpRows(os.Stdout, dumps)
	}
}

// dumpRow is one tool's one-shot dump of every thread's stack.
type dumpRow struct {
	target, tool string
	runs, ok     int
	wall, cpu    time.Duration // medians
	wallP90      time.Duration
	faults       int64 // median minor page faults
	note         string
}

// dumpTool is one command of the one-shot dumps.
type dumpTool struct {
	name string
	argv []string
}

// oneShotDumps times the one-shot dumps of every thread on the profile
// target, interleaved (same target, same minutes): austin -w (in the
// target's root, with its interpreter: the way a user reaches a target in
// a container with it) and pyglass stacks (from the host), paused and
// not (--nonblocking, which reads as austin does, the running threads
// read again until two reads agree). Issue 11's goal: pyglass stacks
// faster than austin -w. The wrapper that enters the
// root (nsenter and chroot, running true) is timed too: it is part of
// austin's time here, and none of pyglass's.
func oneShotDumps(env *Env, tg *Target, n int) []dumpRow {
	tools := []dumpTool{
		{"austin -w (nsenter + chroot)", inRoot(tg, "austin", "-w", strconv.Itoa(tg.PID))},
		{"pyglass stacks", []string{env.Pyglass, "stacks", strconv.Itoa(tg.PID)}},
		{"pyglass stacks --nonblocking", []string{env.Pyglass, "stacks", "--nonblocking", strconv.Itoa(tg.PID)}},
	}
	if tg.Interp.Chroot != "" {
		tools = append(tools, dumpTool{"nsenter + chroot alone (true)", inRoot(tg, "true")})
	}
	return timeDumps(tools, tg.Interp.Label, n)
}

// hostDumps is oneShotDumps on a target that is not in a container (the
// newest pyenv interpreter austin reads, 3.8 to 3.13): austin runs
// directly, through the sid root's own dynamic loader and C library, so
// that no wrapper is timed.
func hostDumps(root string, env *Env, sid string, n int) []dumpRow {
	var in testenv.Interp
	for _, c := range testenv.Interpreters() {
		if c.Chroot == "" && c.Major == 3 && c.Minor >= 8 && c.Minor <= 13 && strings.HasPrefix(c.Path, testenv.PyenvRoot()) && c.Minor >= in.Minor {
			in = c
		}
	}
	loader := filepath.Join(sid, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	austin := filepath.Join(sid, "usr/bin/austin")
	if in.Label == "" {
		fmt.Fprintln(os.Stderr, "bench: no pyenv interpreter from 3.8 to 3.13: no direct austin -w row")
		return nil
	}
	for _, p := range []string{loader, austin} {
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(os.Stderr, "bench: no %s: no direct austin -w row\n", p)
			return nil
		}
	}
	tg, err := StartTarget(root, in, Profile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: starting %s: %v\n", in.Label, err)
		return nil
	}
	defer tg.Stop()
	pid := strconv.Itoa(tg.PID)
	return timeDumps([]dumpTool{
		{"austin -w (direct)", []string{loader, "--library-path", filepath.Join(sid, "usr/lib/x86_64-linux-gnu"), austin, "-w", pid}},
		{"pyglass stacks", []string{env.Pyglass, "stacks", pid}},
		{"pyglass stacks --nonblocking", []string{env.Pyglass, "stacks", "--nonblocking", pid}},
	}, in.Label, n)
}

// timeDumps runs tools in turn, n+1 rounds (the first one warms the
// caches up and is not counted), and gives their medians; the second
// tool's note compares it with the first, and so does the third's when
// it is pyglass's.
func timeDumps(tools []dumpTool, label string, n int) []dumpRow {
	walls := make([][]time.Duration, len(tools))
	cpus := make([][]time.Duration, len(tools))
	faults := make([][]int64, len(tools))
	rows := make([]dumpRow, len(tools))
	for i := 0; i < n+1; i++ { // the first round warms the caches up
		for k, t := range tools {
			fmt.Fprintf(os.Stderr, "bench: %s on %s, run %d/%d\n", t.name, label, i, n)
			cmd := exec.Command(t.argv[0], t.argv[1:]...)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			d := time.Since(start)
			if i == 0 {
				continue
			}
			rows[k].runs++
			if err != nil {
				rows[k].note = fmt.Sprintf("%v: %s", err, lastLine(out))
				continue
			}
			rows[k].ok++
			walls[k] = append(walls[k], d)
			cpus[k] = append(cpus[k], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			faults[k] = append(faults[k], minorFaults(cmd.ProcessState))
		}
	}
	for k, t := range tools {
		rows[k].target, rows[k].tool = label, t.name
		if len(walls[k]) > 0 {
			rows[k].wall, rows[k].wallP90 = percentile(walls[k], 0.5), percentile(walls[k], 0.9)
			rows[k].cpu = percentile(cpus[k], 0.5)
			rows[k].faults = percentile(faults[k], 0.5)
		}
	}
	if len(rows) < 2 {
		return rows
	}
	if a, p := rows[0], rows[1]; a.ok > 0 && p.ok > 0 {
		verdict := "met"
		if p.wall >= a.wall {
			verdict = "NOT met"
		}
		rows[1].note = fmt.Sprintf("%.2fx austin -w; goal (faster than austin -w): %s", float64(p.wall)/float64(a.wall), verdict)
	}
	// The third, pyglass without pausing (as austin reads): compared too.
	if len(rows) > 2 && rows[0].ok > 0 && rows[2].ok > 0 && strings.HasPrefix(rows[2].tool, "pyglass") {
		rows[2].note = fmt.Sprintf("%.2fx austin -w", float64(rows[2].wall)/float64(rows[0].wall))
	}
	return rows
}

func printDumpRows(w io.Writer, rows []dumpRow) {
	var cells [][]string
	for _, r := range rows {
		cells = append(cells, []string{r.target, r.tool, fmt.Sprintf("%d/%d", r.ok, r.runs), ms(r.wall), ms(r.wallP90), ms(r.cpu), fmt.Sprint(r.faults), r.note})
	}
	fmt.Fprintln(w, machineLine())
	fmt.Fprintln(w)
	writeTable(w, []string{"target", "one-shot dump of every thread", "runs ok", "wall median", "wall p90", "CPU median", "minor faults median", "note"}, cells)
}

// writeTable writes a Markdown table, its columns aligned.
func writeTable(w io.Writer, head []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		for _, c := range cells {
			fmt.Fprintf(tw, "| %s\t", c)
		}
		fmt.Fprintln(tw, "|")
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	tw.Flush()
}

func rateName(rate int) string {
	if rate == 0 {
		return "max"
	}
	if rate >= 1000 {
		return fmt.Sprintf("%d kHz", rate/1000)
	}
	return fmt.Sprintf("%d Hz", rate)
}

// profileOnce measures the target alone for secs, then with the tool for
// secs, and reads what the tool found.
func profileOnce(env *Env, tg *Target, tool profTool, rate, secs int) profRow {
	var r profRow
	w0, err := tg.work()
	if err != nil {
		r.note = err.Error()
		return r
	}
	time.Sleep(time.Duration(secs) * time.Second)
	w1, err := tg.work()
	if err != nil {
		r.note = err.Error()
		return r
	}
	dir, err := os.MkdirTemp(filepath.Join(tg.Interp.Chroot, "/tmp"), "pyglass-bench-prof-")
	if err != nil {
		r.note = err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	host := filepath.Join(dir, "out.txt")
	inPath := "/" + strings.TrimPrefix(strings.TrimPrefix(host, tg.Interp.Chroot), "/")
	out := host
	if !strings.HasPrefix(tool.name, "pyglass") {
		out = inPath
	}
	argv := tool.argv(env, tg, rate, secs, out)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err = cmd.Run()
	el := time.Since(t0)
	w2, werr := tg.work()
	if err != nil {
		r.note = fmt.Sprintf("%v: %s", err, lastLines(stripANSI(stderr.String()), 2))
		return r
	}
	if werr != nil {
		r.note = werr.Error()
		return r
	}
	var cpu time.Duration
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	samples, lost, err := tool.parse(host, stdout.String(), stderr.String())
	if err != nil {
		r.note = err.Error()
		return r
	}
	r.samplesPerSec = float64(samples) / el.Seconds()
	r.cpuPerSec = cpu.Seconds() / el.Seconds()
	if samples > 0 {
		r.cpuPerSample = cpu / time.Duration(samples)
		r.lostPct = 100 * float64(lost) / float64(samples+lost)
	}
	base := float64(w1.rounds-w0.rounds) / w1.at.Sub(w0.at).Seconds()
	with := float64(w2.rounds-w1.rounds) / w2.at.Sub(w1.at).Seconds()
	r.slowWall = 100 * (1 - with/base)
	if c0, c1 := (w1.cpu - w0.cpu).Seconds(), (w2.cpu - w1.cpu).Seconds(); c0 > 0 && c1 > 0 {
		r.slowCPU = 100 * (1 - (float64(w2.rounds-w1.rounds)/c1)/(float64(w1.rounds-w0.rounds)/c0))
	}
	r.shareA = shareOfA(host)
	return r
}

// shareOfA reads a collapsed-stack file (pyglass's and profiling.sampling's
// "a;b;c N", Austin's "P..;T..;file:func:line;... N") and returns the
// share of the hot thread's samples that have a() on the stack.
func shareOfA(path string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var inA, inB float64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	isA := regexp.MustCompile(`(^|;)(a \(|[^;]*:a:\d+|a\b[^;]*profile_target)`)
	isB := regexp.MustCompile(`(^|;)(b \(|[^;]*:b:\d+|b\b[^;]*profile_target)`)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		n, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case isA.MatchString(l[:i]):
			inA += n
		case isB.MatchString(l[:i]):
			inB += n
		}
	}
	if inA+inB == 0 {
		return 0
	}
	return 100 * inA / (inA + inB)
}

// runsOn says whether tool reads in's version: Austin 3.7 reads up to
// 3.13, profiling.sampling is 3.15's.
func (tool profTool) runsOn(in testenv.Interp) bool {
	switch {
	case tool.name == "austin 3.7":
		return in.Minor <= 13
	case strings.HasPrefix(tool.name, "python3.15"):
		return in.Minor == 15
	}
	return true
}

// median returns the middle value of v (the upper one of an even count),
// 0 for none; v is sorted.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func medianRow(rs []profRow) profRow {
	out := rs[0]
	med := func(get func(profRow) float64) float64 {
		var v []float64
		for _, r := range rs {
			if r.note == "" {
				v = append(v, get(r))
			}
		}
		return median(v)
	}
	out.note = ""
	for _, r := range rs {
		if r.note != "" {
			out.note = r.note
		}
	}
	out.samplesPerSec = med(func(r profRow) float64 { return r.samplesPerSec })
	out.cpuPerSec = med(func(r profRow) float64 { return r.cpuPerSec })
	out.cpuPerSample = time.Duration(med(func(r profRow) float64 { return float64(r.cpuPerSample) }))
	out.slowWall = med(func(r profRow) float64 { return r.slowWall })
	out.slowCPU = med(func(r profRow) float64 { return r.slowCPU })
	out.shareA = med(func(r profRow) float64 { return r.shareA })
	out.lostPct = med(func(r profRow) float64 { return r.lostPct })
	return out
}

func printProfRows(w io.Writer, rows []profRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| target\t| tool\t| rate asked\t| samples/s (10 threads)\t| CPU (of a core)\t| CPU per sample\t| target slowdown wall / per CPU-s\t| share of a (70 %)\t| lost\t| note\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range rows {
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %.0f\t| %.1f %%\t| %.1f µs\t| %.1f %% / %.1f %%\t| %.1f %%\t| %.2f %%\t| %s\t|\n",
			r.target, r.tool, r.rate, r.samplesPerSec, 100*r.cpuPerSec, float64(r.cpuPerSample)/1e3, r.slowWall, r.slowCPU, r.shareA, r.lostPct, r.note)
	}
	tw.Flush()
}

// slowRow is a profiler's effect on the target's rate of work, from
// paired windows (see measureSlowdown).
type slowRow struct {
	target, tool     string
	pairs            int
	speed, speedHalf float64 // mean % of speed lost, and its 95 % half-width
	wall, wallHalf   float64 // the same for rounds per wall second
	sd               float64 // the standard deviation of one pair's speed difference
	note             string
}

// measureSlowdown measures what tool at rate costs the target: pairs of
// windows of secs seconds, one without a profiler and one with it
// (started half a second before its window, stopping after it), in ABBA
// order. In each: the target's speed (rounds of a() and b() per second
// its hot thread spent in them, both counted by the target and read
// together), and its rounds per wall second. One pair's difference varies
// by a few % (the machine's speed moves: another VM on the host); the mean
// of many and its 95 % confidence interval (Student's t) resolve a 1.5 %
// effect when there are enough of them.
func measureSlowdown(env *Env, tg *Target, tool profTool, rate, pairs, secs int) slowRow {
	r := slowRow{tool: tool.name, pairs: pairs}
	window := func() (wall, speed float64, err error) {
		a, err := tg.work()
		if err != nil {
			return 0, 0, err
		}
		time.Sleep(time.Duration(secs) * time.Second)
		b, err := tg.work()
		if err != nil {
			return 0, 0, err
		}
		n := float64(b.rounds - a.rounds)
		if b.busy <= a.busy {
			return 0, 0, fmt.Errorf("the target spent no time working")
		}
		return n / b.at.Sub(a.at).Seconds(), n / (b.busy - a.busy), nil
	}
	dir, err := os.MkdirTemp(filepath.Join(tg.Interp.Chroot, "/tmp"), "pyglass-bench-slow-")
	if err != nil {
		r.note = err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	with := func() (wall, speed float64, err error) {
		out := filepath.Join(dir, "out.txt")
		if !strings.HasPrefix(tool.name, "pyglass") {
			out = "/" + strings.TrimPrefix(strings.TrimPrefix(out, tg.Interp.Chroot), "/")
		}
		argv := tool.argv(env, tg, rate, secs+1, out)
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		defer cmd.Wait()
		time.Sleep(500 * time.Millisecond)
		return window()
	}
	var dSpeed, dWall []float64
	for i := 0; i < pairs; i++ {
		fmt.Fprintf(os.Stderr, "bench: slowdown of %s on %s, pair %d/%d\n", tool.name, tg.Interp.Label, i+1, pairs)
		var offW, offS, onW, onS float64
		var err error
		if i%2 == 0 {
			if offW, offS, err = window(); err == nil {
				onW, onS, err = with()
			}
		} else {
			if onW, onS, err = with(); err == nil {
				offW, offS, err = window()
			}
		}
		if err != nil {
			r.note = err.Error()
			return r
		}
		dWall = append(dWall, 100*(1-onW/offW))
		dSpeed = append(dSpeed, 100*(1-onS/offS))
	}
	r.speed, r.speedHalf = meanCI(dSpeed)
	r.wall, r.wallHalf = meanCI(dWall)
	r.sd = r.speedHalf / tQuantile95(pairs-1) * math.Sqrt(float64(pairs))
	return r
}

// meanCI returns the mean of v and the half-width of its 95 % confidence
// interval (Student's t with len(v)-1 degrees of freedom).
func meanCI(v []float64) (mean, half float64) {
	n := float64(len(v))
	if n < 2 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= n
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	sd := math.Sqrt(ss / (n - 1))
	return mean, tQuantile95(len(v)-1) * sd / math.Sqrt(n)
}

// tQuantile95 is the two-sided 95 % quantile of Student's t with df
// degrees of freedom (the table's value for the next lower df listed).
func tQuantile95(df int) float64 {
	table := []struct {
		df int
		t  float64
	}{{1, 12.706}, {2, 4.303}, {3, 3.182}, {4, 2.776}, {5, 2.571}, {6, 2.447}, {7, 2.365}, {8, 2.306}, {9, 2.262},
		{10, 2.228}, {12, 2.179}, {15, 2.131}, {20, 2.086}, {25, 2.060}, {30, 2.042}, {40, 2.021}, {60, 2.000}, {120, 1.980}}
	t := 12.706
	for _, e := range table {
		if df >= e.df {
			t = e.t
		}
	}
	if df > 120 {
		t = 1.960
	}
	return t
}

func printSlowRows(w io.Writer, rows []slowRow) {
	var cells [][]string
	for _, r := range rows {
		verdict := "-"
		if r.note == "" {
			switch {
			case r.speed+r.speedHalf <= 1.5:
				verdict = "met (the interval's top within)"
			case r.speed-r.speedHalf > 1.5:
				verdict = "NOT met"
			default:
				verdict = "not settled: more pairs"
			}
		}
		cells = append(cells, []string{r.target, r.tool, strconv.Itoa(r.pairs), fmt.Sprintf("%.2f %% ± %.2f", r.speed, r.speedHalf),
			fmt.Sprintf("%.2f %%", r.sd), fmt.Sprintf("%.2f %% ± %.2f", r.wall, r.wallHalf), verdict, r.note})
	}
	writeTable(w, []string{"target", "tool at 1 kHz", "pairs", "speed lost (mean, 95 % CI)", "one pair's sd", "rounds per wall second lost", "goal (≤ 1.5 %)", "note"}, cells)
	fmt.Fprintln(w, "\nslowdown: 100 x (1 - rate with the profiler / rate without), the mean over paired 2 s windows (ABBA order) and the half-width of its 95 % confidence interval. Speed: the target's rounds of work per second its hot thread spent in them (both counted by the target, read together); a profiler that takes the GIL or the CPU from it lowers the rounds per wall second, one that slows the thread's work (caches, memory, page-table locks) lowers the speed.")
}

// wakeFloor is the share of a core this process uses while one of its
// goroutines does nothing but sleep 1 ms at a time for d, with the
// kernel's sleep (procfs.Nanosleep), as pyglass's sampler does between
// samples at 1 kHz: in a virtual machine a wake-up alone costs tens of
// µs. Nothing else of the bench runs meanwhile.
func wakeFloor(d time.Duration) float64 {
	c0, t0 := procfs.SelfCPU(), time.Now()
	for time.Since(t0) < d {
		procfs.Nanosleep(time.Millisecond)
	}
	return float64(procfs.SelfCPU()-c0) / float64(time.Since(t0))
}
