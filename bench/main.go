// Command bench compares pyglass with the gdb techniques it replaces, on
// the same idle target: how long each takes and how long it stalls the
// target's heartbeat thread. See bench/README.md.
//
//	go run ./bench [-n 10] [-interp default|all|LABEL,...] [-only REGEXP]
//	go run ./bench -profilers [-n 3] [-secs 5]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

func main() {
	n := flag.Int("n", 10, "timed runs per command")
	warmup := flag.Int("warmup", 1, "untimed runs per command before the timed ones")
	interps := flag.String("interp", "default", `targets: "default" (newest pyenv 3.x, 3.11-debian and 3.15-chroot), "all", or labels such as "3.12,2.7"; with -profilers, pyglass record also profiles these (the anchors only their own targets)`)
	only := flag.String("only", "", `run only the commands whose name or group ("leak") matches this regexp; with -profilers, the profilers whose "target tool" ("3.15-sid pyglass record") does`)
	pyglassPath := flag.String("pyglass", "", "pyglass binary (default: build ./cmd/pyglass)")
	gdbFlag := flag.String("gdb", "auto", `gdb to use: "host" (gdb on PATH), "sid" (the sid root's, from scripts/sid-root.sh --gdb), "auto" (sid's if installed, else host's) or a path`)
	timeout := flag.Duration("timeout", 60*time.Second, "limit for one run of a command")
	flip := flag.Bool("flip", false, "with -profilers: only the accuracy on a thread that runs 2 ms and sleeps 2 ms in turn (testdata/stacks_flip.py), each profiler against the thread's own split")
	dumps := flag.Bool("dumps", false, "with -profilers: only the one-shot dumps, austin -w against pyglass stacks on the profile target")
	profilers := flag.Bool("profilers", false, "run the profiler bench instead: pyglass record against Austin and python3.15 -m profiling.sampling (needs scripts/sid-root.sh --bench)")
	secs := flag.Int("secs", 5, "with -profilers: seconds each profiler runs")
	slowdown := flag.Int("slowdown", 0, "with -profilers: only the target's slowdown at 1 kHz, from this many pairs of 2 s windows without and with each profiler")
	flag.Parse()

	root, err := moduleRoot()
	if err != nil {
		fatal(err)
	}
	env := &Env{Pyglass: *pyglassPath, HostGDB: []string{"gdb"}}
	if env.GDB, err = pickGDB(*gdbFlag); err != nil {
		fatal(err)
	}
	if env.Pyglass == "" {
		dir, err := os.MkdirTemp("", "pyglass-bench-bin-")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(dir)
		env.Pyglass, env.PyglassErr = buildPyglass(root, dir)
	}
	hdir, err := os.MkdirTemp("", "pyglass-bench-hello-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(hdir)
	env.Hello, env.HelloErr = buildHello(hdir)
	if *profilers {
		// The anchors' targets always; other interpreters, given by
		// -interp, with pyglass alone (the goals hold on every one).
		var extra []testenv.Interp
		if *interps != "default" && *interps != "" {
			if extra, err = pickInterps(*interps); err != nil {
				fatal(err)
			}
		}
		runProfilers(root, env, *n, *secs, *dumps, *flip, *slowdown, *only, extra)
		return
	}
	fmt.Fprintf(os.Stderr, "bench: gdb: %s\n", strings.Join(env.GDB, " "))
	var re *regexp.Regexp
	if *only != "" {
		if re, err = regexp.Compile(*only); err != nil {
			fatal(fmt.Errorf("parsing -only: %w", err))
		}
	}
	targets, err := pickInterps(*interps)
	if err != nil {
		fatal(err)
	}

	var rows []Row
	for _, in := range targets {
		fmt.Fprintf(os.Stderr, "bench: target %s (%s)\n", in.Label, in.HostPath())
		rows = append(rows, benchInterp(root, env, in, commands, re, *n, *warmup, *timeout)...)
	}
	printTable(os.Stdout, rows)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 64; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	return "", errors.New("finding the module root: run bench inside the pyglass module")
}

func buildPyglass(root, dir string) (string, error) {
	out := filepath.Join(dir, "pyglass")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/pyglass")
	cmd.Dir = root
	// The static binary pyglass is meant to be (README): with cgo, Go
	// links libc dynamically, and loading it costs every run 5-7 ms.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		msg := strings.TrimSpace(string(b))
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		fmt.Fprintf(os.Stderr, "bench: building cmd/pyglass failed: %v\n%s\n", err, b)
		return "", fmt.Errorf("build failed: %s", msg)
	}
	return out, nil
}

// buildHello builds a Go hello-world in dir: the floor of pyglass's own
// start-up (the "pyglass version" row is compared with it).
func buildHello(dir string) (string, error) {
	src := "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello, world\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the Go hello-world failed: %v: %s", err, lastLine(b))
	}
	return out, nil
}

// pickGDB resolves the -gdb flag.
func pickGDB(spec string) ([]string, error) {
	sid := testenv.SidRoot()
	hasSid := false
	if _, err := os.Stat(filepath.Join(sid, "usr/bin/gdb")); err == nil {
		hasSid = true
	}
	switch spec {
	case "auto":
		if hasSid {
			return sidGDB(sid), nil
		}
		return []string{"gdb"}, nil
	case "sid":
		if !hasSid {
			return nil, fmt.Errorf("no gdb in %s: run scripts/sid-root.sh --gdb", sid)
		}
		return sidGDB(sid), nil
	case "host":
		return []string{"gdb"}, nil
	}
	return []string{spec}, nil
}

// pickInterps resolves the -interp flag.
func pickInterps(spec string) ([]testenv.Interp, error) {
	all := testenv.Interpreters()
	switch spec {
	case "all":
		return all, nil
	case "default", "":
		var out []testenv.Interp
		var newest *testenv.Interp
		for i, in := range all {
			if in.Major == 3 && in.Chroot == "" && !strings.Contains(in.Label, "-") {
				if newest == nil || in.AtLeast(newest.Major, newest.Minor) {
					newest = &all[i]
				}
			}
		}
		if newest != nil {
			out = append(out, *newest)
		}
		for _, l := range []string{"3.11-debian", "3.15-chroot"} {
			if in, ok := testenv.Lookup(l); ok {
				out = append(out, in)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no pyenv 3.x interpreter and no /usr/bin/python3.11")
		}
		return out, nil
	}
	var out []testenv.Interp
	for _, l := range strings.Split(spec, ",") {
		in, ok := testenv.Lookup(strings.TrimSpace(l))
		if !ok {
			return nil, fmt.Errorf("no interpreter labelled %q (have %s)", l, labels(all))
		}
		out = append(out, in)
	}
	return out, nil
}

func labels(ins []testenv.Interp) string {
	var s []string
	for _, in := range ins {
		s = append(s, in.Label)
	}
	return strings.Join(s, ", ")
}

// Row is the result of one command on one target.
type Row struct {
	Target, Name, Baseline string
	Times, Stalls          []time.Duration // successful runs only
	CPU                    []time.Duration // their CPU time (user and system)
	Faults                 []int64         // their minor page faults
	Goal                   time.Duration   // Command.Goal
	Runs                   int             // attempted timed runs
	Err                    string          // first failure, if any
	Harm                   string          // what a run did to the target, if anything
}

func benchInterp(root string, env *Env, in testenv.Interp, cmds []Command, re *regexp.Regexp, n, warmup int, timeout time.Duration) []Row {
	var rows []Row
	targets := map[Fixture]*Target{} // one live target per fixture
	defer func() {
		for _, tg := range targets {
			tg.Stop()
		}
	}()
	for _, c := range cmds {
		if c.Applies != nil && !c.Applies(in) || re != nil && !re.MatchString(c.Name) && (c.Group == "" || !re.MatchString(c.Group)) {
			continue
		}
		row := Row{Target: in.Label, Name: c.Name, Baseline: c.Baseline, Goal: c.Goal}
		fmt.Fprintf(os.Stderr, "bench:   %s ", c.Name)
		for i := 0; i < warmup+n; i++ {
			tg := targets[c.Target]
			if tg == nil {
				var err error
				if tg, err = StartTarget(root, in, c.Target); err != nil {
					row.Err = "starting target: " + err.Error()
					break
				}
				targets[c.Target] = tg
			}
			d, cpu, faults, stall, err, harm := runOnce(env, c, tg, timeout)
			if harm != "" {
				row.Harm = harm
				tg.Stop() // start a fresh target for the next run
				delete(targets, c.Target)
			}
			if i < warmup {
				if err != nil {
					row.Err = err.Error()
					row.Runs = 1
					break // a failing command fails every time: skip it
				}
				continue
			}
			row.Runs++
			if err != nil {
				if row.Err == "" {
					row.Err = err.Error()
				}
				fmt.Fprint(os.Stderr, "x")
				if len(row.Times) == 0 && row.Runs >= 2 {
					break
				}
				continue
			}
			fmt.Fprint(os.Stderr, ".")
			row.Times = append(row.Times, d)
			row.CPU = append(row.CPU, cpu)
			row.Faults = append(row.Faults, faults)
			row.Stalls = append(row.Stalls, stall)
		}
		fmt.Fprintln(os.Stderr)
		rows = append(rows, row)
	}
	return rows
}

// runOnce runs c once against tg and returns its wall time, its CPU time
// (user and system, its children's included), its minor page faults
// (its children's included), the longest heartbeat stall during it, a
// failure, and what it did to the target if it harmed it (left it
// stopped, traced, unresponsive or dead).
func runOnce(env *Env, c Command, tg *Target, timeout time.Duration) (d, cpu time.Duration, faults int64, stall time.Duration, err error, harm string) {
	argv, err := c.Argv(env, tg)
	if err != nil {
		return 0, 0, 0, 0, err, ""
	}
	if err := tg.Reset(); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("target unresponsive before the run: %w", err), "unresponsive"
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	start := time.Now()
	out, runErr := cmd.CombinedOutput()
	d = time.Since(start)
	if st := cmd.ProcessState; st != nil {
		cpu = st.UserTime() + st.SystemTime()
	}
	faults = minorFaults(cmd.ProcessState)
	if runErr != nil {
		err = fmt.Errorf("%v: %s", runErr, lastLine(out))
	}
	if isGDB(env, argv) && gdbFailed(out) {
		err = fmt.Errorf("gdb: %s", gdbError(out)) // gdb -batch exits 0 when a call fails
	}
	if herr := tg.Healthy(); herr != nil {
		return d, cpu, faults, 0, err, herr.Error()
	}
	stall, serr := tg.Stall()
	if serr != nil {
		return d, cpu, faults, 0, err, "unresponsive after the run: " + serr.Error()
	}
	return d, cpu, faults, stall, err, ""
}

func isGDB(env *Env, argv []string) bool {
	for _, g := range [][]string{env.GDB, env.HostGDB} {
		if len(g) > 0 && len(argv) >= len(g) && strings.Join(argv[:len(g)], "\x00") == strings.Join(g, "\x00") {
			return true
		}
	}
	return false
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// gdbFailed reports whether gdb's batch output shows that a command failed
// (gdb -batch exits 0 even when a call fails).
func gdbFailed(out []byte) bool { return gdbError(out) != "" }

func gdbError(out []byte) string {
	for _, l := range strings.Split(string(out), "\n") {
		for _, bad := range []string{"No symbol", "not defined", "Cannot access memory", "The program being debugged", "ptrace: ", "Python Exception", "Error occurred", "Undefined command", "Couldn't write", "Couldn't get", "History has not yet reached"} {
			if strings.Contains(l, bad) {
				if len(l) > 120 {
					l = l[:120] + "..."
				}
				return strings.TrimSpace(l)
			}
		}
	}
	return ""
}

// percentile is the nearest-rank p-th percentile of xs (times, fault
// counts), 0 when empty.
func percentile[T time.Duration | int64](xs []T, p float64) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// nearest-rank
	k := int(p*float64(len(s))+0.999999) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(s) {
		k = len(s) - 1
	}
	return s[k]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func printTable(w io.Writer, rows []Row) {
	medians := map[string]time.Duration{}
	for _, r := range rows {
		if len(r.Times) > 0 {
			medians[r.Target+"\x00"+r.Name] = percentile(r.Times, 0.5)
		}
	}
	fmt.Fprintln(w, machineLine())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tcommand\truns ok\tmedian\tp90\tcpu median\tfaults median\tratio vs gdb\tstall median\tstall max\tnote")
	for _, r := range rows {
		ratio := "-"
		if r.Baseline != "" {
			ratio = "n/a"
			if b, ok := medians[r.Target+"\x00"+r.Baseline]; ok && len(r.Times) > 0 && b > 0 {
				ratio = fmt.Sprintf("%.2fx", float64(percentile(r.Times, 0.5))/float64(b))
			}
		}
		med, p90, cpu, faults, smed, smax := "-", "-", "-", "-", "-", "-"
		if len(r.Times) > 0 {
			med, p90, cpu = ms(percentile(r.Times, 0.5)), ms(percentile(r.Times, 0.9)), ms(percentile(r.CPU, 0.5))
			faults = fmt.Sprint(percentile(r.Faults, 0.5))
			smed, smax = ms(percentile(r.Stalls, 0.5)), ms(percentile(r.Stalls, 1))
		}
		var note []string
		if r.Goal > 0 && len(r.Times) > 0 {
			verdict := "met"
			if percentile(r.Times, 0.5) > r.Goal {
				verdict = "NOT met"
			}
			note = append(note, fmt.Sprintf("goal: median <= %s, %s", ms(r.Goal), verdict))
		}
		if r.Harm != "" {
			note = append(note, "HARMED TARGET: "+r.Harm)
		}
		if r.Err != "" {
			note = append(note, "error: "+r.Err)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Target, r.Name, len(r.Times), r.Runs, med, p90, cpu, faults, ratio, smed, smax, strings.Join(note, "; "))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nratio: median / median of the gdb technique it replaces on the same target; cpu: user and system time of the command (and its children); faults: its minor page faults (and its children's); stall: the target's heartbeat thread's longest gap during one run (sleep period 5ms).\n")
}
