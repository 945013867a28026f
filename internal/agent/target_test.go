package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// interp is one Python interpreter present on this machine.
type interp struct {
	name         string // "3.11.7", "debian-3.11"
	path         string
	major, minor int
}

// interpreters lists the interpreters the tests run against: every pyenv
// version and Debian's /usr/bin/python3.11. Skips the test if none exists.
func interpreters(t *testing.T) []interp {
	t.Helper()
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		if out, err := exec.Command("pyenv", "root").Output(); err == nil {
			root = strings.TrimSpace(string(out))
		} else if home, err := os.UserHomeDir(); err == nil {
			root = filepath.Join(home, ".pyenv")
		}
	}
	var list []interp
	vre := regexp.MustCompile(`/python(\d)\.(\d+)$`)
	if root != "" {
		matches, _ := filepath.Glob(filepath.Join(root, "versions", "*", "bin", "python[23].*"))
		sort.Strings(matches)
		for _, m := range matches {
			sm := vre.FindStringSubmatch(m)
			if sm == nil {
				continue
			}
			maj, _ := strconv.Atoi(sm[1])
			min, _ := strconv.Atoi(sm[2])
			list = append(list, interp{name: filepath.Base(filepath.Dir(filepath.Dir(m))), path: m, major: maj, minor: min})
		}
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		list = append(list, interp{name: "debian-3.11", path: "/usr/bin/python3.11", major: 3, minor: 11})
	}
	if len(list) == 0 {
		t.Skip("no Python interpreter found (pyenv versions or /usr/bin/python3.11)")
	}
	return list
}

// forEachInterp runs f as a parallel subtest for every interpreter.
func forEachInterp(t *testing.T, f func(t *testing.T, py interp)) {
	for _, py := range interpreters(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			t.Parallel()
			f(t, py)
		})
	}
}

// target is a running testdata/target.py process with its agent
// directories and listeners.
type target struct {
	t         *testing.T
	cmd       *exec.Cmd
	dirs      []string
	listeners []*net.UnixListener
	parallel  bool

	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
	exited chan struct{}
}

type targetOpts struct {
	parallel bool // start all agents at once, else one after the other
	noDir    []bool
	noListen []bool
	omit     map[int]string // agent i's directory lacks this file of Files
}

// startTarget starts the fixture with n agent sessions.
func startTarget(t *testing.T, py interp, n int, o targetOpts) *target {
	t.Helper()
	tg := &target{t: t, exited: make(chan struct{}), parallel: o.parallel}
	base := t.TempDir()
	mode := "seq"
	if o.parallel {
		mode = "par"
	}
	args := []string{"testdata/target.py", mode}
	env := os.Environ()
	for i := 0; i < n; i++ {
		// Quotes, a backslash, non-ASCII and invalid UTF-8 exercise
		// Bootstrap's quoting on every interpreter.
		d := filepath.Join(base, fmt.Sprintf("d%d '\\\" \u00e9\xff", i))
		tg.dirs = append(tg.dirs, d)
		args = append(args, d)
		env = append(env, fmt.Sprintf("PYGLASS_BOOT_%d=%s", i, Bootstrap(d)))
		if i < len(o.noDir) && o.noDir[i] {
			tg.listeners = append(tg.listeners, nil)
			continue
		}
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, src := range Files {
			if o.omit[i] == name {
				continue
			}
			if err := os.WriteFile(filepath.Join(d, name), src, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if i < len(o.noListen) && o.noListen[i] {
			tg.listeners = append(tg.listeners, nil)
			continue
		}
		l, err := Listen(d, os.Getuid(), os.Getgid())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		tg.listeners = append(tg.listeners, l)
	}
	cmd := exec.Command(py.path, args...)
	cmd.Env = append(env, "PYTHONDONTWRITEBYTECODE=1", "PYTHONIOENCODING=utf-8")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &tg.mu, w: &tg.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg.cmd = cmd
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			tg.mu.Lock()
			tg.lines = append(tg.lines, sc.Text())
			tg.mu.Unlock()
		}
		cmd.Wait()
		close(tg.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-tg.exited
	})
	return tg
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// accept waits for agent i's connection and hello.
func (tg *target) accept(i int) *Conn {
	tg.t.Helper()
	c, err := Accept(tg.listeners[i], 20*time.Second)
	if err != nil {
		tg.t.Fatalf("agent %d: %v (target stderr: %s)", i, err, tg.stderrText())
	}
	tg.t.Cleanup(func() { c.Close() })
	return c
}

func (tg *target) stderrText() string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.stderr.String()
}

// waitLine waits for a stdout line with the given prefix and returns it.
func (tg *target) waitLine(prefix string, timeout time.Duration) string {
	tg.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tg.mu.Lock()
		for _, l := range tg.lines {
			if strings.HasPrefix(l, prefix) {
				tg.mu.Unlock()
				return l
			}
		}
		tg.mu.Unlock()
		select {
		case <-tg.exited:
			// One last look happens on the next iteration only if lines
			// were added before exit; check once more then fail.
			tg.mu.Lock()
			for _, l := range tg.lines {
				if strings.HasPrefix(l, prefix) {
					tg.mu.Unlock()
					return l
				}
			}
			tg.mu.Unlock()
			tg.t.Fatalf("target exited without printing %q; stderr: %s", prefix, tg.stderrText())
		default:
		}
		if time.Now().After(deadline) {
			tg.t.Fatalf("no line %q from the target within %v; stderr: %s", prefix, timeout, tg.stderrText())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkReport checks that after agent i ended, the target's state is as
// before: no name added to __main__, sys streams and displayhook restored,
// no hub left, D removed, sys.stdin still open.
func (tg *target) checkReport(i int) {
	tg.t.Helper()
	line := tg.waitLine(fmt.Sprintf("REPORT %d ", i), 20*time.Second)
	threads := "ok"
	if tg.parallel {
		threads = "-"
	}
	want := fmt.Sprintf("REPORT %d added=- stdout=True stderr=True stdin=True displayhook=True hub=False dir=False stdinclosed=False threads=%s kept=False", i, threads)
	if line != want {
		tg.t.Errorf("target state after agent %d:\n got %s\nwant %s", i, line, want)
	}
}

// finish waits for the target to end and checks that its ticks were all
// printed, in order, to its own stdout, and that its stderr is empty.
func (tg *target) finish() {
	tg.t.Helper()
	end := tg.waitLine("END ticks=", 60*time.Second)
	n, err := strconv.Atoi(strings.TrimPrefix(end, "END ticks="))
	if err != nil {
		tg.t.Fatal(err)
	}
	<-tg.exited
	tg.mu.Lock()
	defer tg.mu.Unlock()
	next := 0
	for _, l := range tg.lines {
		if strings.HasPrefix(l, "tick ") {
			if l != fmt.Sprintf("tick %d", next) {
				tg.t.Errorf("target stdout: got %q, want tick %d", l, next)
				return
			}
			next++
		}
	}
	if next != n {
		tg.t.Errorf("target printed %d ticks on its stdout, want %d", next, n)
	}
	// Nothing of the agents' is left, not even as cyclic garbage.
	garbage := ""
	saved := map[string]bool{}
	for _, l := range tg.lines {
		if strings.HasPrefix(l, "GARBAGE ") {
			garbage = l
		}
		if strings.HasPrefix(l, "SAVED ") {
			saved[l] = true
		}
	}
	if garbage != "GARBAGE total=0 " {
		tg.t.Errorf("cyclic garbage in the target after the sessions: %q", garbage)
	}
	// Routers a session kept work after every session ended, passing
	// through to the target's streams.
	if len(saved) > 0 {
		ok := saved["SAVED stdout"] && saved["SAVED lines"]
		for l := range saved {
			if strings.HasPrefix(l, "SAVED error") {
				ok = false
			}
		}
		if !ok {
			tg.t.Errorf("routers used after the sessions ended: %v", saved)
		}
	}
	if s := tg.stderr.String(); s != "" {
		tg.t.Errorf("target stderr not empty: %q", s)
	}
}
