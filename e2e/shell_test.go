package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// session is a pyglass process whose output the test reads as it comes:
// through a pseudo-terminal (terminal mode) or a pipe (script mode).
type session struct {
	t    testing.TB
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	out  bytes.Buffer
	mark int // Expect looks after this offset
	more chan struct{}
	done chan struct{} // closed when the output is at EOF
	wait chan error    // the result of cmd.Wait, once
	err  error
	exit bool
}

func newSession(t testing.TB, cmd *exec.Cmd, in io.WriteCloser, out io.Reader) *session {
	s := &session{t: t, cmd: cmd, in: in, more: make(chan struct{}, 1), done: make(chan struct{}), wait: make(chan error, 1)}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			if n > 0 {
				s.mu.Lock()
				s.out.Write(buf[:n])
				s.mu.Unlock()
				select {
				case s.more <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		if !s.exited() {
			cmd.Process.Kill()
			s.Wait(10 * time.Second)
		}
	})
	return s
}

// startTerminal runs `pyglass shell args...` on a new pseudo-terminal with
// env added to the test's environment.
func startTerminal(t testing.TB, env []string, args ...string) *session {
	t.Helper()
	return startPty(t, env, append([]string{"shell"}, args...)...)
}

// startPty runs `pyglass args...` on a new pseudo-terminal (its
// controlling terminal: Ctrl-C typed there is SIGINT) with env added to
// the test's environment.
func startPty(t testing.TB, env []string, args ...string) *session {
	t.Helper()
	cmd := exec.Command(testenv.BuildPyglass(t), args...)
	cmd.Env = append(append(os.Environ(), "TERM=xterm"), env...)
	f, err := startOnPty(cmd, 40, 200)
	if err != nil {
		t.Fatalf("starting pyglass on a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return newSession(t, cmd, f, f)
}

// startScript runs `pyglass shell args...` with a pipe as stdin, stdout
// and stderr together in one buffer.
func startScript(t testing.TB, args ...string) *session {
	t.Helper()
	cmd := exec.Command(testenv.BuildPyglass(t), append([]string{"shell"}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pyglass: %v", err)
	}
	w.Close()
	t.Cleanup(func() { r.Close() })
	return newSession(t, cmd, in, r)
}

// Send writes s as typed.
func (s *session) Send(str string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, str); err != nil {
		s.t.Fatalf("writing to pyglass: %v\noutput so far: %q", err, s.Output())
	}
}

// Output returns everything pyglass printed.
func (s *session) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Expect waits until pyglass has printed want after the previous Expect's
// match and returns what came before it.
func (s *session) Expect(want string, timeout time.Duration) string {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		all := s.out.String()
		if i := strings.Index(all[s.mark:], want); i >= 0 {
			before := all[s.mark : s.mark+i]
			s.mark += i + len(want)
			s.mu.Unlock()
			return before
		}
		s.mu.Unlock()
		select {
		case <-s.more:
		case <-s.done:
			// Last look, then give up.
			s.mu.Lock()
			all = s.out.String()
			s.mu.Unlock()
			if strings.Contains(all[s.mark:], want) {
				continue
			}
			s.t.Fatalf("pyglass ended before printing %q; output after the last match: %q", want, all[s.mark:])
		case <-deadline.C:
			s.t.Fatalf("pyglass did not print %q within %s; output after the last match: %q", want, timeout, all[s.mark:])
		}
	}
}

// Stmt types line and Enter on a terminal session and returns what the
// statement printed before the next prompt (">>> " or "... "). The echo of
// the typed line, redrawn at each key, ends with the newline of Enter.
func (s *session) Stmt(line, prompt string) string {
	s.t.Helper()
	s.Send(line + "\r")
	s.Expect("\n", 5*time.Second)
	return s.Expect(prompt, 10*time.Second)
}

// Rest returns the output after the last match.
func (s *session) Rest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()[s.mark:]
}

func (s *session) exited() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exit
}

// Wait waits for pyglass to exit and returns its exit code.
func (s *session) Wait(timeout time.Duration) int {
	s.t.Helper()
	s.mu.Lock()
	if s.exit {
		s.mu.Unlock()
		return s.cmd.ProcessState.ExitCode()
	}
	s.mu.Unlock()
	go func() { s.wait <- s.cmd.Wait() }()
	select {
	case <-s.wait:
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.wait
		s.mu.Lock()
		s.exit = true
		s.mu.Unlock()
		s.t.Fatalf("pyglass did not exit within %s; output: %q", timeout, s.Output())
	}
	s.mu.Lock()
	s.exit = true
	s.mu.Unlock()
	return s.cmd.ProcessState.ExitCode()
}

// threads returns the number of threads of pid.
func threads(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// listening returns the TCP sockets (v4 and v6) of pid in the LISTEN
// state, as "local-address:port" strings of /proc/PID/net/tcp{,6}.
func listening(t testing.TB, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing the descriptors of %d: %v", pid, err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) >= 10 && fs[3] == "0A" && inodes[fs[9]] {
				out = append(out, f+" "+fs[1])
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestShellTerminal drives a real terminal session on every interpreter:
// banner, a function over several lines, the target's globals, an
// exception, Ctrl-C on a half-typed line and in a pending block, Ctrl-D,
// and the history file. The target's own output stays on its stdout and
// its main thread is never interrupted.
func TestShellTerminal(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		// A private /tmp: only this test's pyglass makes directories there.
		tg := testenv.Start(t, in, testenv.Fixture(t, "shell_target.py"), testenv.Args("interval=0.05"), testenv.PrivateTmp())
		state := t.TempDir()
		s := startTerminal(t, []string{"XDG_STATE_HOME=" + state}, strconv.Itoa(tg.PID))

		// Banner: PID, Python version, executable.
		s.Expect(fmt.Sprintf("pyglass shell in process %d: Python %d.%d.", tg.PID, in.Major, in.Minor), 30*time.Second)
		banner := s.Expect("\n", 5*time.Second)
		if !strings.Contains(banner, filepath.Base(in.Path)) {
			t.Fatalf("the banner does not name the executable %s: %q", in.Path, banner)
		}
		s.Expect(">>> ", 10*time.Second)

		// A function over several lines, then a call.
		s.Stmt("def f(a):", "... ")
		s.Stmt("    b = a * 2", "... ")
		s.Stmt("    return b + 1000", "... ")
		s.Stmt("", ">>> ")
		if got := s.Stmt("f(21)", ">>> "); !strings.Contains(got, "1042") {
			t.Fatalf("f(21) printed %q", got)
		}

		// The fresh namespace reaches __main__ by import.
		if got := s.Stmt("import __main__; __main__.GREETING.upper()", ">>> "); !strings.Contains(got, "'HELLO FROM THE TARGET'") {
			t.Fatalf("__main__.GREETING printed %q", got)
		}
		if got := s.Stmt("'GREETING' in globals(), __name__", ">>> "); !strings.Contains(got, "(False, '__pyglass__')") {
			t.Fatalf("the fresh namespace is not fresh: %q", got)
		}

		// An exception, and the session goes on with its state.
		got := s.Stmt("{}['nokey']", ">>> ")
		if !strings.Contains(got, "Traceback (most recent call last):") || !strings.Contains(got, "KeyError: 'nokey'") {
			t.Fatalf("the exception printed %q", got)
		}
		if got := s.Stmt("f(1)", ">>> "); !strings.Contains(got, "1002") {
			t.Fatalf("after the exception f(1) printed %q", got)
		}

		// Ctrl-C on a half-typed line drops it; Ctrl-C in a block drops
		// the block. Neither reaches the target.
		ticks := len(tg.Stdout())
		s.Send("undefined_name_half_typed")
		s.Expect("half_typed", 5*time.Second) // the line editor has it
		s.Send("\x03")
		s.Expect("^C", 5*time.Second)
		s.Expect(">>> ", 5*time.Second)
		s.Stmt("def g():", "... ")
		s.Send("    return 1")
		s.Expect("return 1", 5*time.Second)
		s.Send("\x03")
		s.Expect("^C", 5*time.Second)
		s.Expect(">>> ", 5*time.Second)
		got = s.Stmt("'g' in globals(), 6 * 111", ">>> ")
		if !strings.Contains(got, "(False, 666)") || strings.Contains(got, "NameError") {
			t.Fatalf("after Ctrl-C: %q", got)
		}
		if strings.Contains(s.Output(), "undefined_name_half_typed' is not defined") {
			t.Fatalf("the cancelled line ran: %q", s.Output())
		}

		// The target's own output stays on its stdout; the shell's output
		// never goes there.
		if got := s.Stmt("print('shell-' + 'output')", ">>> "); !strings.Contains(got, "shell-output") {
			t.Fatalf("print printed %q", got)
		}
		if err := testenv.TryWaitUntil(10*time.Second, func() bool {
			for _, l := range tg.Stdout()[ticks:] {
				if strings.HasPrefix(l, "TICK") {
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatalf("the target stopped printing while the shell was open")
		}
		for _, l := range tg.Stdout() {
			if strings.Contains(l, "shell-output") || strings.HasPrefix(l, "EXCEPTION") {
				t.Fatalf("the target printed %q", l)
			}
		}
		if strings.Contains(s.Output(), "TICK") {
			t.Fatalf("the target's output reached the shell: %q", s.Output())
		}

		// Ctrl-D ends the session with status 0; the target keeps running.
		s.Send("\x04")
		if code := s.Wait(10 * time.Second); code != 0 {
			t.Fatalf("Ctrl-D: exit %d; output %q", code, s.Output())
		}
		healthy(t, tg)
		tg.WaitLine("TICK", 5*time.Second)
		noTraces(t, tg)
		if d := pyglassDirs(t, tg.PID, "/tmp"); len(d) != 0 {
			t.Fatalf("left behind in the target's /tmp: %v", d)
		}

		// The history file holds the lines typed, not the cancelled one.
		h, err := os.ReadFile(filepath.Join(state, "pyglass", "history"))
		if err != nil {
			t.Fatalf("reading the history file: %v", err)
		}
		for _, l := range []string{"def f(a):", "f(21)", "{}['nokey']"} {
			if !strings.Contains(string(h), l) {
				t.Fatalf("the history lacks %q: %q", l, h)
			}
		}
		if strings.Contains(string(h), "undefined_name_half_typed") {
			t.Fatalf("the history holds the cancelled line: %q", h)
		}
	})
}

// TestShellMainNamespace: --namespace main runs in __main__'s globals, on
// a terminal.
func TestShellMainNamespace(t *testing.T) {
	in := anyInterp(t, "3.12")
	tg := testenv.Start(t, in, testenv.Fixture(t, "shell_target.py"))
	s := startTerminal(t, []string{"XDG_STATE_HOME=" + t.TempDir()}, strconv.Itoa(tg.PID), "--namespace", "main")
	s.Expect(">>> ", 30*time.Second)
	tg.WaitLine("TICK", 5*time.Second)
	if got := s.Stmt("GREETING.title(), TICKS > 0, __name__", ">>> "); !strings.Contains(got, "('Hello From The Target', True, '__main__')") {
		t.Fatalf("__main__'s globals: %q", got)
	}
	s.Send("exit()\r")
	if code := s.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit(): exit %d; output %q", code, s.Output())
	}
	healthy(t, tg)
	noTraces(t, tg)
}

// TestShellScript: piped input runs as one program, as python runs a
// script piped to it (no blank line needed after a block, expressions do
// not echo, __file__ is <stdin>, the first exception ends it and exits 1,
// SystemExit(N) exits N), on every interpreter.
func TestShellScript(t *testing.T) {
	script := `x = 6 * 7
x
print(x)
import __main__
print(__main__.GREETING)
def f(a):
    if a:
        return a + 1
    return 0
print(f(x))
for i in range(2):
    print(i)
print(__file__)
[i * i for i in range(4)]
1/0
print('after')
`
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "shell_target.py"))
		pid := strconv.Itoa(tg.PID)
		r := run(t, []byte(script), "shell", pid)
		want(t, r, 1)
		if wantOut := "42\nhello from the target\n43\n0\n1\n<stdin>\n"; r.Stdout != wantOut {
			t.Fatalf("got %s\nwant stdout %q", r, wantOut)
		}
		if !strings.Contains(r.Stderr, "Traceback (most recent call last):") || !strings.Contains(r.Stderr, `File "<stdin>", line 15`) || !strings.Contains(r.Stderr, "ZeroDivisionError") {
			t.Fatalf("no traceback: %s", r)
		}
		// __main__'s globals with --namespace main; the fresh namespace
		// does not see them.
		r = run(t, []byte("print(GREETING)\n"), "shell", pid, "--namespace", "main")
		want(t, r, 0)
		if r.Stdout != "hello from the target\n" {
			t.Fatalf("--namespace main: %s", r)
		}
		r = run(t, []byte("print(GREETING)\n"), "shell", pid)
		want(t, r, 1)
		if r.Stdout != "" || !strings.Contains(r.Stderr, "NameError") {
			t.Fatalf("the fresh namespace sees __main__'s globals: %s", r)
		}
		// exit(N) and SystemExit(N) end it with status N.
		r = run(t, []byte("print(1)\nexit(3)\nprint(2)\n"), "shell", pid)
		want(t, r, 3)
		if r.Stdout != "1\n" {
			t.Fatalf("exit(3): %s", r)
		}
		r = run(t, []byte("if True:\n    raise SystemExit(7)\n"), "shell", pid)
		want(t, r, 7)
		healthy(t, tg)
		noTraces(t, tg)
	})
}

// TestShellKilled: SIGKILL to pyglass mid-session; within 2 s the agent
// thread is gone from the target and so is the private directory, and the
// target still works.
func TestShellKilled(t *testing.T) {
	for _, label := range []string{"2.7", "3.12", "3.14-chroot"} {
		t.Run(label, func(t *testing.T) {
			in, ok := testenv.Lookup(label)
			if !ok {
				testenv.Skipf(t, "%s is not present", label)
			}
			// A private /tmp: only this test's pyglass makes directories
			// there.
			tg := testenv.Start(t, in, testenv.Fixture(t, "shell_target.py"), testenv.PrivateTmp())
			tg.WaitLine("TICK", 5*time.Second)
			n0 := threads(tg.PID)
			dirs0 := pyglassDirs(t, tg.PID, "/tmp")
			s := startScript(t, strconv.Itoa(tg.PID))
			s.Send("print(6 * 7)\n")
			s.Expect("42\n", 30*time.Second)
			if n := threads(tg.PID); n != n0+2 {
				t.Fatalf("want two more threads during the session, the agent's and its reader: %d (before %d)", n, n0)
			}
			if d := added(dirs0, pyglassDirs(t, tg.PID, "/tmp")); len(d) != 1 {
				t.Fatalf("want one channel directory during the session, got %v", d)
			}
			s.cmd.Process.Signal(syscall.SIGKILL)
			s.Wait(5 * time.Second)
			killed := time.Now()
			for {
				n, d := threads(tg.PID), added(dirs0, pyglassDirs(t, tg.PID, "/tmp"))
				if n == n0 && len(d) == 0 {
					t.Logf("cleaned up %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
					break
				}
				if time.Since(killed) > 2*time.Second {
					t.Fatalf("2 s after SIGKILL: %d threads (before %d), channel directories %v", n, n0, d)
				}
				time.Sleep(20 * time.Millisecond)
			}
			healthy(t, tg)
			r := run(t, nil, "exec", strconv.Itoa(tg.PID), "-c", "import __main__; print(__main__.TICKS > 0)")
			want(t, r, 0)
			if r.Stdout != "True\n" {
				t.Fatalf("exec after the kill: %s", r)
			}
			noTraces(t, tg)
		})
	}
}

// TestShellTwoAtOnce: two shells on one target at once, each with its own
// namespace.
func TestShellTwoAtOnce(t *testing.T) {
	for _, label := range []string{"2.7", "3.13"} {
		t.Run(label, func(t *testing.T) {
			in, ok := testenv.Lookup(label)
			if !ok {
				testenv.Skipf(t, "%s is not present", label)
			}
			tg := testenv.Start(t, in, testenv.Fixture(t, "shell_target.py"))
			// The second starts once the first is up: two pyglass
			// starting at the same instant race (see the report).
			a := startScript(t, strconv.Itoa(tg.PID))
			a.Send("who = 'A'\nprint('a ready')\n")
			a.Expect("a ready\n", 30*time.Second)
			b := startScript(t, strconv.Itoa(tg.PID))
			b.Send("who = 'B'\nprint('b ready')\n")
			b.Expect("b ready\n", 30*time.Second)
			for i := 0; i < 3; i++ {
				a.Send(fmt.Sprintf("print('%%s%%d' %% (who, %d))\n", i))
				b.Send(fmt.Sprintf("print('%%s%%d' %% (who, %d))\n", i))
				a.Expect(fmt.Sprintf("A%d\n", i), 5*time.Second)
				b.Expect(fmt.Sprintf("B%d\n", i), 5*time.Second)
			}
			a.in.Close()
			b.in.Close()
			if ca, cb := a.Wait(10*time.Second), b.Wait(10*time.Second); ca != 0 || cb != 0 {
				t.Fatalf("exit codes %d and %d; outputs %q and %q", ca, cb, a.Output(), b.Output())
			}
			if strings.Contains(a.Output(), "B") || strings.Contains(b.Output(), "A") {
				t.Fatalf("the namespaces mixed: %q and %q", a.Output(), b.Output())
			}
			healthy(t, tg)
			noTraces(t, tg)
		})
	}
}

// TestShellBlockedAccept: a 2.7 target blocked in accept() keeps serving
// connections while a shell is open in it, and no network port is opened
// for the shell.
func TestShellBlockedAccept(t *testing.T) {
	for _, label := range []string{"2.7", "3.12"} {
		t.Run(label, func(t *testing.T) {
			in, ok := testenv.Lookup(label)
			if !ok {
				testenv.Skipf(t, "%s is not present", label)
			}
			tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("accept", "interval=5"))
			var port string
			for _, l := range tg.Stdout() {
				if strings.HasPrefix(l, "PORT ") {
					port = strings.TrimPrefix(l, "PORT ")
				}
			}
			if port == "" {
				t.Fatalf("the target printed no port: %q", tg.Stdout())
			}
			connect := func() {
				t.Helper()
				c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
				if err != nil {
					t.Fatalf("connecting to the target: %v", err)
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				// The target accepts and closes: read EOF.
				if _, err := bufio.NewReader(c).ReadByte(); err != io.EOF {
					t.Fatalf("want the target to close the connection, got %v", err)
				}
				c.Close()
				tg.WaitLine("ACCEPTED", 5*time.Second)
			}
			connect()
			before := listening(t, tg.PID)
			s := startScript(t, strconv.Itoa(tg.PID))
			s.Send("print('open')\n")
			s.Expect("open\n", 30*time.Second)
			for i := 0; i < 3; i++ {
				connect()
				s.Send(fmt.Sprintf("print(%d * 1000)\n", i+1))
				s.Expect(fmt.Sprintf("%d000\n", i+1), 5*time.Second)
			}
			during := listening(t, tg.PID)
			if strings.Join(before, ",") != strings.Join(during, ",") {
				t.Fatalf("the target's listening sockets changed during the shell: %v -> %v", before, during)
			}
			if l := listening(t, s.cmd.Process.Pid); len(l) != 0 {
				t.Fatalf("pyglass listens on %v", l)
			}
			s.in.Close()
			if c := s.Wait(10 * time.Second); c != 0 {
				t.Fatalf("exit %d: %q", c, s.Output())
			}
			connect()
			healthy(t, tg)
			noTraces(t, tg)
		})
	}
}

// TestShellOtherUserAndNamespaces: a shell works in a target running as
// nobody with its own private /tmp, and in one in its own PID and mount
// namespaces; nothing is left in its /tmp afterwards.
func TestShellOtherUserAndNamespaces(t *testing.T) {
	in := anyInterp(t, "2.7", "3.12")
	for _, c := range []struct {
		name string
		opts []testenv.StartOption
	}{
		{"nobody-private-tmp", []testenv.StartOption{testenv.AsUser("nobody"), testenv.PrivateTmp()}},
		{"pid-and-mount-namespace", []testenv.StartOption{testenv.NewPIDNS(), testenv.PrivateTmp()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg := testenv.Start(t, in, testenv.Fixture(t, "shell_target.py"), c.opts...)
			r := run(t, []byte("import os\nprint('%d %d' % (os.getpid(), os.geteuid()))\nimport __main__\nprint(__main__.GREETING)\n"), "shell", strconv.Itoa(tg.PID))
			want(t, r, 0)
			st, err := os.Stat(fmt.Sprintf("/proc/%d", tg.PID))
			if err != nil {
				t.Fatal(err)
			}
			uid := st.Sys().(*syscall.Stat_t).Uid
			if wantOut := fmt.Sprintf("%d %d\nhello from the target\n", tg.NSPID, uid); r.Stdout != wantOut {
				t.Fatalf("got %s\nwant stdout %q", r, wantOut)
			}
			if d := pyglassDirs(t, tg.PID, "/tmp"); len(d) != 0 {
				t.Fatalf("left in the target's /tmp: %v", d)
			}
			healthy(t, tg)
		})
	}
}
