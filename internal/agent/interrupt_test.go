package agent

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// signalWriter is a writer that closes seen when what it got contains
// want.
type signalWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
}

func newSignalWriter(want string) *signalWriter {
	return &signalWriter{want: want, seen: make(chan struct{})}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.b.String(), w.want)
	w.b.Write(p)
	if !had && strings.Contains(w.b.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// sleepCalls are the system calls time.sleep makes, per architecture
// (clock_nanosleep, nanosleep, select, pselect6, poll, ppoll).
var sleepCalls = map[string][]int{
	"amd64": {230, 35, 23, 270, 7, 271},
	"arm64": {115, 101, 72, 73},
}

// inSleep waits until thread tid of pid is in one of sleepCalls (so a
// break sent now comes while time.sleep runs, not before it started: on
// a loaded machine the code's thread may be slow to get from its "running"
// line to the sleep).
func inSleep(t *testing.T, pid, tid int) {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil && slices.Contains(sleepCalls[runtime.GOARCH], n) {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("thread %d of %d did not reach time.sleep within 20 s", tid, pid)
}

// execBreak runs code on c, sends a break once its stdout shows "running"
// (and, when ready is not nil, once ready returned), and returns the
// status and stderr.
func execBreak(t *testing.T, c *Conn, code string, ready ...func()) (int, string) {
	t.Helper()
	out := newSignalWriter("running")
	var errb testenv.SyncBuffer
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		st, err := c.Exec([]byte(code), "<string>", out, &errb)
		done <- result{st, err}
	}()
	select {
	case <-out.seen:
	case r := <-done:
		t.Fatalf("the code ended before the break: %+v, stderr %q", r, errb.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the code did not start; stdout %q", out.String())
	}
	time.Sleep(50 * time.Millisecond)
	for _, f := range ready {
		f()
	}
	if err := c.Break(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("exec: %v", r.err)
		}
		return r.status, errb.String()
	case <-time.After(20 * time.Second):
		t.Fatalf("the code did not stop within 20 s of the break; stderr %q", errb.String())
	}
	return 0, ""
}

// readBreaking reads up to the next prompt, sending a break every 600 ms
// (a break that comes before the statement runs is dropped, one that comes
// within 0.5 s of the last raise too). With a marker (not ""), the breaks
// start once the statement has printed it: a statement whose try block must be
// entered first prints it there (a break that comes before raises
// outside the block).
func (s shellSession) readBreaking(marker string) (stdout, stderr, prompt string) {
	s.t.Helper()
	type result struct{ o, e, p string }
	done := make(chan result, 1)
	o := newSignalWriter(marker)
	go func() {
		var e bytes.Buffer
		p, end, err := s.c.ReadOutput(o, &e)
		if err != nil {
			p = "<error " + err.Error() + ">"
		} else if end {
			p = "<exit>"
		}
		done <- result{o.String(), e.String(), p}
	}()
	limit := time.After(20 * time.Second)
	if marker != "" {
		select {
		case <-o.seen:
		case r := <-done:
			return r.o, r.e, r.p
		case <-limit:
			s.t.Fatalf("the statement did not print %q within 20 s", marker)
		}
	}
	tick := time.NewTicker(600 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := s.c.Break(); err != nil {
			s.t.Fatal(err)
		}
		select {
		case r := <-done:
			return r.o, r.e, r.p
		case <-tick.C:
		case <-limit:
			s.t.Fatalf("the statement did not stop within 20 s of breaks")
		}
	}
}

// TestBreak: a break raises KeyboardInterrupt in the code the agent runs
// (a busy loop, a loop that prints, one that catches it, a sleep that ends
// first), only in the agent's thread: the target's main thread goes on
// ticking, its stderr stays empty, the shell session and its namespace go
// on, the protocol stays in step, a break when nothing runs is dropped,
// and no thread or garbage is left.
func TestBreak(t *testing.T) {
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		tg := startTarget(t, py, 3, targetOpts{})

		// exec: a busy loop.
		c := tg.accept(0)
		status, stderr := execBreak(t, c, "import sys\nsys.stdout.write('running\\n')\nsys.stdout.flush()\nwhile True:\n    pass\n")
		if status != 1 || !strings.HasSuffix(stderr, "KeyboardInterrupt\n") || !strings.Contains(stderr, "Traceback (most recent call last):") {
			t.Errorf("busy loop: status %d, stderr %q", status, stderr)
		}
		tg.checkReport(0)

		// shell: the statement stops, the session goes on.
		s := shellSession{t, tg.accept(1), &last{}}
		s.start(false)
		s.do("x = 5", "", "", PromptPrimary)
		for i, stmt := range []string{
			"while True: pass",
			"while True: print('y' * 200)",
			"while True: sys.stdout.write('z' * 70000)",
		} {
			if i == 0 {
				s.do("import sys", "", "", PromptPrimary)
			}
			for round := 0; round < 3; round++ {
				s.do(stmt, "", "", PromptSecondary)
				if err := s.c.SendLine(""); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(round*40) * time.Millisecond)
				out, errs, prompt := s.readBreaking("")
				if prompt != PromptPrimary || !strings.HasSuffix(errs, "KeyboardInterrupt\n") {
					t.Fatalf("%q round %d: prompt %q, stderr %.300q, stdout %d bytes", stmt, round, prompt, errs, len(out))
				}
				// (the console echoes write()'s return value, 70000)
				if rest := strings.Trim(out, "yz70 \n"); rest != "" {
					t.Fatalf("%q round %d: stdout holds more than the loop's output: %.200q", stmt, round, rest)
				}
				s.do("x + 1", "6\n", "", PromptPrimary)
			}
		}
		// Code that catches it goes on.
		s.do("try:", "", "", PromptSecondary)
		// (not "while True: pass": 3.11 and 3.12 raise an asynchronous
		// exception in that loop outside its try block)
		// (the break once it is inside: one that came before the try
		// block is entered, under load, raised outside it on 2.7)
		s.do("    _ = sys.stdout.write('in\\n')", "", "", PromptSecondary)
		s.do("    sys.stdout.flush()", "", "", PromptSecondary)
		s.do("    while True:", "", "", PromptSecondary)
		s.do("        n = 1", "", "", PromptSecondary)
		s.do("except KeyboardInterrupt:", "", "", PromptSecondary)
		s.do("    print('caught')", "", "", PromptSecondary)
		if err := s.c.SendLine(""); err != nil {
			t.Fatal(err)
		}
		// (2.7: a print statement cut short leaves softspace set)
		if out, errs, prompt := s.readBreaking("in\n"); strings.TrimLeft(strings.TrimPrefix(out, "in\n"), " ") != "caught\n" || errs != "" || prompt != PromptPrimary {
			t.Errorf("caught: out %q err %q prompt %q", out, errs, prompt)
		}
		// A break at the prompt is dropped.
		if err := s.c.Break(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		s.do("x", "5\n", "", PromptPrimary)
		if err := s.c.EndShell(); err != nil {
			t.Fatal(err)
		}
		if _, _, prompt := s.read(); prompt != "<exit>" {
			t.Errorf("after Ctrl-D: %q", prompt)
		}
		tg.checkReport(1)

		// exec: a sleep gets KeyboardInterrupt when it returns.
		// (how long it slept is measured by the code itself: on a loaded
		// machine its "running" line may reach the test late, so the
		// time from the break to the end says nothing)
		c = tg.accept(2)
		h := c.Hello()
		status, stderr = execBreak(t, c, "import sys, time\nt0 = time.time()\nsys.stdout.write('running\\n')\nsys.stdout.flush()\ntry:\n    time.sleep(1.5)\n    while True:\n        pass\nfinally:\n    sys.stderr.write('slept %.3f\\n' % (time.time() - t0))\n",
			func() { inSleep(t, h.PID, h.TID) })
		var slept float64
		if i := strings.Index(stderr, "slept "); i >= 0 {
			fmt.Sscanf(stderr[i:], "slept %g", &slept)
		}
		if status != 1 || !strings.HasSuffix(stderr, "KeyboardInterrupt\n") || slept < 1.45 {
			t.Errorf("sleep: status %d after %.3f s of sleep, stderr %q", status, slept, stderr)
		}
		tg.checkReport(2)
		tg.finish()
	})
}

// TestBreakWithoutCtypes: where ctypes cannot be imported, a break does
// nothing (the statement runs to its end) and the session goes on.
func TestBreakWithoutCtypes(t *testing.T) {
	forEachInterp(t, func(t *testing.T, py testenv.Interp) {
		tg := startTarget(t, py, 1, targetOpts{})
		s := shellSession{t, tg.accept(0), &last{}}
		s.start(false)
		s.do("import sys; saved = sys.modules.get('ctypes'); sys.modules['ctypes'] = None", "", "", PromptPrimary)
		if err := s.c.SendLine("import time; time.sleep(1); print('slept')"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := s.c.Break(); err != nil {
			t.Fatal(err)
		}
		if out, errs, prompt := s.read(); out != "slept\n" || errs != "" || prompt != PromptPrimary {
			t.Errorf("sleep: out %q err %q prompt %q", out, errs, prompt)
		}
		s.do("sys.modules['ctypes'] = saved; del sys.modules['ctypes']", "", "", PromptPrimary)
		s.do("6 * 7", "42\n", "", PromptPrimary)
		if err := s.c.EndShell(); err != nil {
			t.Fatal(err)
		}
		if _, _, prompt := s.read(); prompt != "<exit>" {
			t.Errorf("after Ctrl-D: %q", prompt)
		}
		tg.checkReport(0)
		tg.finish()
	})
}
