package shell

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/pyglass/pyglass/internal/agent"
)

// targetScript runs the bootstrap from a second thread, as an injection
// would, and exits when the agent is done.
const targetScript = `
import os, sys, time
try:
    import _thread as t
except ImportError:
    import thread as t
done = []
def run(boot):
    try:
        exec(boot, {'__builtins__': __builtins__})
    finally:
        done.append(1)
t.start_new_thread(run, (os.environ['PYGLASS_BOOT'],))
deadline = time.time() + 60
while not done and time.time() < deadline:
    time.sleep(0.01)
`

// pythons returns the interpreters to test with: the newest 3.x and 2.7
// from pyenv, else /usr/bin/python3.11. Skips if there is none.
func pythons(t *testing.T) []string {
	t.Helper()
	var list []string
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		if out, err := exec.Command("pyenv", "root").Output(); err == nil {
			root = strings.TrimSpace(string(out))
		}
	}
	if root != "" {
		for _, pat := range []string{"3.13*/bin/python3.13", "2.7*/bin/python2.7"} {
			if m, _ := filepath.Glob(filepath.Join(root, "versions", pat)); len(m) > 0 {
				list = append(list, m[0])
			}
		}
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		list = append(list, "/usr/bin/python3.11")
	}
	if len(list) == 0 {
		t.Skip("no Python interpreter found")
	}
	return list
}

// startAgent starts a target running the agent and returns the connection.
func startAgent(t *testing.T, py string) (*agent.Conn, string) {
	t.Helper()
	d := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, src := range agent.Files {
		if err := os.WriteFile(filepath.Join(d, name), src, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := agent.Listen(d, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cmd := exec.Command(py, "-c", targetScript)
	cmd.Env = append(os.Environ(), "PYGLASS_BOOT="+agent.Bootstrap(d))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	c, err := agent.Accept(l, 20*time.Second)
	if err != nil {
		t.Fatalf("accepting the agent: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, d
}

func TestScript(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		t.Run(filepath.Base(py), func(t *testing.T) {
			t.Parallel()
			c, d := startAgent(t, py)
			// A script: no blank line after a block, no echo, the first
			// exception ends it with status 1.
			in := strings.NewReader("def f(x):\n    return x + 1\nprint(f(1))\nf(1)\nprint('hi')\nfor i in range(2):\n    print(i)\n{}['k']\nprint('after')\n")
			var out, errb bytes.Buffer
			st, err := Run(Options{Conn: c, In: in, Out: &out, Err: &errb})
			if err != nil {
				t.Fatal(err)
			}
			if st != 1 {
				t.Errorf("status %d, want 1", st)
			}
			if got, want := out.String(), "2\nhi\n0\n1\n"; got != want {
				t.Errorf("stdout %q, want %q", got, want)
			}
			if !strings.HasSuffix(errb.String(), "KeyError: 'k'\n") {
				t.Errorf("stderr %q", errb.String())
			}
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("agent directory left behind: %v", err)
			}
		})
	}
}

// ptyOut collects what the shell writes to the terminal.
type ptyOut struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (p *ptyOut) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.Write(b)
}

func (p *ptyOut) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

// waitFor waits until the output after offset from contains s and returns
// the offset just past it.
func (p *ptyOut) waitFor(t *testing.T, from int, s string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out := p.String()
		if from <= len(out) {
			if i := strings.Index(out[from:], s); i >= 0 {
				return from + i + len(s)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("terminal never showed %q after offset %d; it shows:\n%q", s, from, p.String())
	return 0
}

func TestTerminal(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		t.Run(filepath.Base(py), func(t *testing.T) {
			c, d := startAgent(t, py)
			master, slave, err := pty.Open()
			if err != nil {
				t.Skipf("no pseudo-terminal: %v", err)
			}
			defer master.Close()
			defer slave.Close()
			var screen ptyOut
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := master.Read(buf)
					screen.Write(buf[:n])
					if err != nil {
						return
					}
				}
			}()
			hist := filepath.Join(t.TempDir(), "state", "history")
			type result struct {
				st  int
				err error
			}
			res := make(chan result, 1)
			go func() {
				st, err := Run(Options{Conn: c, In: slave, Out: slave, Err: slave, HistoryFile: hist,
					PID: 1234, Version: "3.x", Executable: py})
				res <- result{st, err}
			}()
			type_ := func(s string) {
				if _, err := master.Write([]byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			off := screen.waitFor(t, 0, "pyglass shell in process 1234")
			off = screen.waitFor(t, off, ">>> ")
			type_("x = 6 * 7\r")
			off = screen.waitFor(t, off, ">>> ")
			type_("x\r")
			off = screen.waitFor(t, off, "42")
			off = screen.waitFor(t, off, ">>> ")
			// Ctrl-C on a half-typed line drops it.
			type_("abc")
			screen.waitFor(t, off, "abc")
			type_("\x03")
			off = screen.waitFor(t, off, "KeyboardInterrupt")
			off = screen.waitFor(t, off, ">>> ")
			type_("x + 1\r")
			off = screen.waitFor(t, off, "43")
			off = screen.waitFor(t, off, ">>> ")
			// Ctrl-C in a block drops the block.
			type_("if True:\r")
			off = screen.waitFor(t, off, "... ")
			type_("\x03")
			off = screen.waitFor(t, off, ">>> ")
			type_("print('after' + 'block')\r")
			off = screen.waitFor(t, off, "afterblock")
			off = screen.waitFor(t, off, ">>> ")
			// Ctrl-D ends the session.
			type_("\x04")
			select {
			case r := <-res:
				if r.err != nil || r.st != 0 {
					t.Errorf("Run: status %d, err %v", r.st, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Ctrl-D did not end the shell; terminal:\n%q", screen.String())
			}
			if strings.Contains(screen.String(), "NameError") {
				t.Errorf("a cancelled line was run:\n%q", screen.String())
			}
			h, err := os.ReadFile(hist)
			if err != nil || !strings.Contains(string(h), "x = 6 * 7\n") {
				t.Errorf("history file: %q, %v", h, err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, err := os.Stat(d); os.IsNotExist(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("agent directory left behind")
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
