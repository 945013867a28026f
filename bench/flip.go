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
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// The accuracy bench (-profilers -flip): each profiler samples
// testdata/stacks_flip.py at 1 kHz, whose thread "flipper" runs Python
// code for 2 ms (spin) and sleeps 2 ms (nap) in turn and measures the
// time it spends in each. The share of the flipper's samples in spin is
// compared with the share of its time, with the machine's other CPUs idle
// and then kept busy by spinning processes: a profiler whose wake-ups
// wait on the CPU the flipper keeps busy samples it where it blocks.

// flipRow is one profiler's runs on one target.
type flipRow struct {
	target, tool string
	load         string // what the other CPUs do
	runs, ok     int
	found, truth float64 // medians, %
	worst        float64 // the largest |found - truth| of a run, points
	note         string
}

var (
	leafSpin = regexp.MustCompile(`(^|[^A-Za-z0-9_])spin([^A-Za-z0-9_]|$)`)
	leafNap  = regexp.MustCompile(`(^|[^A-Za-z0-9_])nap([^A-Za-z0-9_]|$)`)
)

// flipShares reads a profile written as lines of "stack weight" (the
// collapsed format; Austin's samples, weighted by their time, are such
// lines too) and returns the weight of the stacks whose leaf is spin and
// of those whose leaf is nap.
func flipShares(r io.Reader) (spin, nap float64) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		w, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		stack := l[:i]
		leaf := stack[strings.LastIndexByte(stack, ';')+1:]
		switch {
		case leafSpin.MatchString(leaf):
			spin += w
		case leafNap.MatchString(leaf):
			nap += w
		}
	}
	return spin, nap
}

// flipSplit asks the flip target for the seconds its flipper spent in
// spin and in nap so far.
func (tg *Target) flipSplit() (spin, nap float64, err error) {
	if _, err := io.WriteString(tg.stdin, "split\n"); err != nil {
		return 0, 0, err
	}
	l, err := tg.wait("SPLIT", 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(l, "SPLIT %f %f", &spin, &nap); err != nil {
		return 0, 0, fmt.Errorf("parsing %q: %w", l, err)
	}
	return spin, nap, nil
}

// flipOnce runs tool on tg for secs at 1 kHz and returns the share of
// the flipper's samples in spin and the share of its time, in %.
func flipOnce(env *Env, tg *Target, tool profTool, secs int) (found, truth float64, err error) {
	dir, err := os.MkdirTemp(filepath.Join(tg.Interp.Chroot, "/tmp"), "pyglass-bench-flip-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	host := filepath.Join(dir, "out.txt")
	out := host
	if !strings.HasPrefix(tool.name, "pyglass") {
		out = "/" + strings.TrimPrefix(strings.TrimPrefix(host, tg.Interp.Chroot), "/")
	}
	s0, n0, err := tg.flipSplit()
	if err != nil {
		return 0, 0, err
	}
	argv := tool.argv(env, tg, 1000, secs, out)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, lastLines(stripANSI(stderr.String()), 2))
	}
	s1, n1, err := tg.flipSplit()
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(host)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	spin, nap := flipShares(f)
	if spin+nap == 0 {
		return 0, 0, fmt.Errorf("no sample of the flipper in spin or nap in %s's output", tool.name)
	}
	return 100 * spin / (spin + nap), 100 * (s1 - s0) / (s1 - s0 + n1 - n0), nil
}

// runFlip runs the accuracy bench on the anchors' targets.
func runFlip(root string, env *Env, n, secs int, onlyRE *regexp.Regexp, targets []testenv.Interp) {
	var rows []flipRow
	for _, in := range targets {
		if _, err := os.Stat(in.HostPath()); err != nil {
			fmt.Fprintf(os.Stderr, "bench: no %s (scripts/sid-root.sh --bench): skipped\n", in.HostPath())
			continue
		}
		tg, err := StartTarget(root, in, Flip)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: starting %s: %v\n", in.Label, err)
			continue
		}
		for _, tool := range profTools {
			if onlyRE != nil && !onlyRE.MatchString(in.Label+" "+tool.name) {
				continue
			}
			if !tool.runsOn(in) {
				continue
			}
			if tool.name == "austin 3.7" {
				if _, err := os.Stat(filepath.Join(in.Chroot, "usr/bin/austin")); err != nil {
					fmt.Fprintf(os.Stderr, "bench: no austin in %s (scripts/sid-root.sh --bench): skipped\n", in.Chroot)
					continue
				}
			}
			for _, busy := range []int{0, max(runtime.NumCPU()-1, 1)} {
				r := flipRow{target: in.Label, tool: tool.name, load: "idle"}
				stop := func() {}
				if busy > 0 {
					r.load = fmt.Sprintf("%d spinning process(es)", busy)
					var err error
					if stop, err = testenv.StartLoad(busy); err != nil {
						r.note = err.Error()
						rows = append(rows, r)
						continue
					}
				}
				var found, truth []float64
				for i := 0; i < n; i++ {
					fmt.Fprintf(os.Stderr, "bench: %s on %s's flipper, other CPUs %s, run %d/%d\n", tool.name, in.Label, r.load, i+1, n)
					r.runs++
					f, t, err := flipOnce(env, tg, tool, secs)
					if err != nil {
						r.note = err.Error()
						continue
					}
					r.ok++
					found, truth = append(found, f), append(truth, t)
					r.worst = max(r.worst, math.Abs(f-t))
				}
				stop()
				if r.ok > 0 {
					r.found, r.truth = median(found), median(truth)
				}
				rows = append(rows, r)
			}
		}
		tg.Stop()
	}
	var cells [][]string
	for _, r := range rows {
		c := []string{r.target, r.tool, r.load, fmt.Sprintf("%d/%d", r.ok, r.runs), "", "", "", r.note}
		if r.ok > 0 {
			c[4] = fmt.Sprintf("%.1f %%", r.found)
			c[5] = fmt.Sprintf("%.1f %%", r.truth)
			c[6] = fmt.Sprintf("%.1f", r.worst)
		}
		cells = append(cells, c)
	}
	writeTable(os.Stdout, []string{"target", "tool at 1 kHz", "other CPUs", "runs ok", "flipper's samples in spin (median)", "its time in spin (median)", "worst run, points off", "note"}, cells)
	fmt.Println("\nflipper: a thread running Python code 2 ms (spin), then sleeping 2 ms (nap), in turn (testdata/stacks_flip.py, which measures its own split); idle threads included by every tool; the other CPUs idle, then each kept busy by a spinning process (a loaded machine). A profiler whose wake-ups wait on the CPU the thread keeps busy samples it where it blocks.")
}
