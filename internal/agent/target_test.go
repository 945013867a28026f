package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// forEachInterp runs f as a parallel subtest for every interpreter
// testenv finds.
func forEachInterp(t *testing.T, f func(t *testing.T, py testenv.Interp)) {
	testenv.ForEachParallel(t, f)
}

// target is a running testdata/target.py process with its agent
// directories and listeners.
type target struct {
	*testenv.Target
	t         *testing.T
	dirs      []string // as the host sees them
	listeners []*net.UnixListener
	parallel  bool
}

type targetOpts struct {
	parallel bool // start all agents at once, else one after the other
	noDir    []bool
	noListen []bool
	omit     map[int]string // agent i's directory lacks this file of Files
}

// startTarget starts the fixture with n agent sessions.
func startTarget(t *testing.T, py testenv.Interp, n int, o targetOpts) *target {
	t.Helper()
	tg := &target{t: t, parallel: o.parallel}
	base, baseIn := testenv.TempDir(t, py)
	mode := "seq"
	if o.parallel {
		mode = "par"
	}
	script, err := os.ReadFile(filepath.Join("testdata", "target.py"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{mode}
	env := []string{"PYTHONIOENCODING=utf-8"}
	for i := 0; i < n; i++ {
		// Quotes, a backslash, non-ASCII and invalid UTF-8 exercise
		// Bootstrap's quoting on every interpreter.
		name := fmt.Sprintf("d%d '\\\" \u00e9\xff", i)
		d, dIn := filepath.Join(base, name), baseIn+"/"+name
		tg.dirs = append(tg.dirs, d)
		args = append(args, dIn)
		env = append(env, fmt.Sprintf("PYGLASS_BOOT_%d=%s", i, Bootstrap(dIn)))
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
	tg.Target = testenv.Start(t, py, string(script), testenv.Args(args...), testenv.Env(env...))
	// The target reads its stdin to its end through a router a session
	// kept (use_saved in target.py).
	if err := tg.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	return tg
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

func (tg *target) stderrText() string { return tg.Stderr() }

// waitLine waits for a stdout line with the given prefix and returns it.
func (tg *target) waitLine(prefix string, timeout time.Duration) string {
	tg.t.Helper()
	return tg.WaitLine(prefix, timeout)
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
	if !tg.Wait(20 * time.Second) {
		tg.t.Fatalf("the target did not exit after %q", end)
	}
	lines := tg.Stdout()
	next := 0
	for _, l := range lines {
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
	for _, l := range lines {
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
	if s := tg.Stderr(); s != "" {
		tg.t.Errorf("target stderr not empty: %q", s)
	}
}
