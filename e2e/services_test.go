package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// Real services from Debian's packages, run by Debian's python3.11 (the
// packages install for it): what pyglass does to them must leave them as
// they were.

// debianWith returns Debian's python3.11 if the modules are importable
// there; else the test is skipped, naming the Debian packages.
func debianWith(t *testing.T, pkgs string, modules ...string) testenv.Interp {
	t.Helper()
	in, ok := testenv.Lookup("3.11-debian")
	if !ok {
		testenv.Skipf(t, "Debian's /usr/bin/python3.11 is absent")
	}
	code := "import " + strings.Join(modules, ", ")
	if out, err := in.Command("-c", code).CombinedOutput(); err != nil {
		testenv.Skipf(t, "%s is not installed (apt-get install %s): %s", strings.Join(modules, ", "), pkgs, strings.TrimSpace(string(out)))
	}
	return in
}

// httpGet fetches http://127.0.0.1:port/ on a new connection and returns
// the status and the body.
func httpGet(t testing.TB, port int64) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// threadCount is the number of Python threads (thread states) of pid, as
// stacks reads them from memory (nothing runs in the target).
func threadCount(t testing.TB, pid string) int {
	t.Helper()
	var d pyglass.StackDump
	decode(t, &d, "stacks", pid, "--json")
	return len(d.Threads)
}

const geventServer = `from gevent import monkey
monkey.patch_all()
import sys
from gevent.pywsgi import WSGIServer

def app(env, start):
    start('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok\n']

srv = WSGIServer(('127.0.0.1', 0), app, log=None)
srv.start()
sys.stdout.write('READY port=%d\n' % srv.server_port)
sys.stdout.flush()
srv.serve_forever()
`

const eventletServer = `import eventlet
eventlet.monkey_patch()
import sys
import eventlet.wsgi

def app(env, start):
    start('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok\n']

sock = eventlet.listen(('127.0.0.1', 0))
sys.stdout.write('READY port=%d\n' % sock.getsockname()[1])
sys.stdout.flush()
eventlet.wsgi.server(sock, app, log_output=False)
`

// settled returns count() once it gave the same value for half a second:
// pyglass returns when the code is done, the agent's own clean-up (closing
// its socket, its thread ending) follows a moment later.
func settled(count func() int) int {
	last, same := -1, 0
	for i := 0; i < 100 && same < 5; i++ {
		n := count()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// threadingState is exec'd to read the threading module's bookkeeping.
const threadingState = `import threading
print('%d %d %d %d' % (len(threading._active), len(threading._limbo), len(getattr(threading, '_dangling', ())), threading.active_count()))
`

// TestMonkeyPatchedServers: on gevent and eventlet servers (monkey-patched
// _thread, time, socket...), 100 execs, the leak reports and a shell leave the
// target's file descriptors, thread states and threading bookkeeping as
// they were, and the server still answers: the agent and the leak scripts
// use the interpreter's own primitives, so no hub is created.
func TestMonkeyPatchedServers(t *testing.T) {
	servers := []struct {
		name, pkg, module, script string
	}{
		{"gevent", "python3-gevent", "gevent", geventServer},
		{"eventlet", "python3-eventlet", "eventlet", eventletServer},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			in := debianWith(t, s.pkg, s.module)
			tg := testenv.Start(t, in, s.script)
			port := fields(t, readyLine(tg))["port"]
			pid := strconv.Itoa(tg.PID)
			// (no request before the baseline: the server closes its end of
			// a connection at a time of its choosing)
			r := run(t, nil, "exec", pid, "-c", threadingState)
			want(t, r, 0)
			threading0 := r.Stdout
			fds := func() int { n, _ := fdCount(t, tg.PID); return n }
			threads := func() int { return threadCount(t, pid) }
			fds0, threads0 := settled(fds), settled(threads)

			const n = 100
			t0 := time.Now()
			for i := 0; i < n; i++ {
				r := run(t, nil, "exec", pid, "-c", "import sys; print(len(sys.modules) > 0)")
				want(t, r, 0)
				if r.Stdout != "True\n" {
					t.Fatalf("exec %d: %s", i, r)
				}
			}
			for _, args := range [][]string{{"objects"}, {"objects", "--all"}, {"garbage"}, {"gc"}, {"trace", "status"}} {
				want(t, run(t, nil, append(append([]string{}, args...), pid)...), 0)
			}
			if r := run(t, []byte("import time\nprint(time.time() > 0)\n"), "shell", pid); r.Code != 0 || r.Stdout != "True\n" {
				t.Fatalf("shell: %s", r)
			}
			took := time.Since(t0)

			fds1, threads1 := settled(fds), settled(threads)
			r = run(t, nil, "exec", pid, "-c", threadingState)
			want(t, r, 0)
			// A leak grows: fewer is a thread of the server that ended.
			if fds1 > fds0 || threads1 > threads0 || r.Stdout != threading0 {
				t.Fatalf("after %d execs, 5 leak reports and a shell: %d fds (was %d), %d thread states (was %d), threading _active/_limbo/_dangling/active_count %q (was %q)",
					n, fds1, fds0, threads1, threads0, strings.TrimSpace(r.Stdout), strings.TrimSpace(threading0))
			}
			if code, body := httpGet(t, port); code != 200 || body != "ok\n" {
				t.Fatalf("the server answered %d %q", code, body)
			}
			t.Logf("%d execs and 5 leak reports in %s: %d fds, %d thread states, threading %s", n, took.Round(time.Millisecond), fds1, threads1, strings.TrimSpace(threading0))
			healthy(t, tg)
		})
	}
}

// gunicornMaster runs a gunicorn master (sync workers) serving a Flask
// app whose view a test wraps from outside.
const gunicornMaster = `import sys
from flask import Flask
from gunicorn.app.base import BaseApplication

app = Flask('svc')

@app.route('/')
def index():
    return 'ok\n'

class Service(BaseApplication):
    def load_config(self):
        self.cfg.set('bind', '127.0.0.1:%s' % sys.argv[1])
        self.cfg.set('workers', 1)
        self.cfg.set('loglevel', 'warning')
        self.cfg.set('graceful_timeout', 1)

    def load(self):
        return app

sys.stdout.write('READY\n')
sys.stdout.flush()
Service().run()
`

// untilNewChild is exec'd in a master after code that makes it start a
// worker: it waits, with the session active, until a child other than
// the pids in %s (a Python set literal) exists, and a moment more.
const untilNewChild = `
def kids():
    out = set()
    for t in os.listdir('/proc/self/task'):
        try:
            out.update(int(c) for c in open('/proc/self/task/%%s/children' %% t).read().split())
        except (IOError, OSError):
            pass
    return out
new = set()
for i in range(3000):
    new = kids() - %s
    if new:
        break
    time.sleep(0.01)
time.sleep(0.3)
print('new child' if new else 'no new child')
`

// children returns the child processes of pid.
func children(t testing.TB, pid int) []int {
	t.Helper()
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// waitChildren waits until pid has n children and returns them.
func waitChildren(t testing.TB, pid, n int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := children(t, pid)
		if len(c) == n {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has children %v, want %d", pid, c, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int64 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int64(l.Addr().(*net.TCPAddr).Port)
}

// readyLine is the READY line Start consumed.
func readyLine(tg *testenv.Target) string {
	for _, l := range tg.Stdout() {
		if strings.HasPrefix(l, "READY") {
			return l
		}
	}
	return ""
}

// TestGunicorn: on a gunicorn master and its Flask worker (Debian's
// packages): a worker spawned (SIGTTIN) while an exec runs in the master
// inherits neither the agent's socket nor its session; a timing wrapper
// that an exec installs on the worker's Flask view keeps working for every
// later request.
func TestGunicorn(t *testing.T) {
	in := debianWith(t, "gunicorn python3-flask", "gunicorn", "flask")
	port := freePort(t)
	tg := testenv.Start(t, in, gunicornMaster, testenv.Args(strconv.FormatInt(port, 10)))
	w1 := waitChildren(t, tg.PID, 1)[0]
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := &http.Client{Timeout: 5 * time.Second}
		if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gunicorn does not answer on port %d; stderr: %s", port, tg.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)

	// TTIN during an exec in the master: the new worker is forked while
	// the session is active.
	r := run(t, nil, "exec", strconv.Itoa(tg.PID), "-c", `import os, signal, time
os.kill(os.getpid(), signal.SIGTTIN)`+fmt.Sprintf(untilNewChild, fmt.Sprintf("set([%d])", w1)))
	want(t, r, 0)
	if r.Stdout != "new child\n" {
		t.Fatalf("exec: %s", r)
	}
	kids := waitChildren(t, tg.PID, 2)
	w2 := kids[0]
	if w2 == w1 {
		w2 = kids[1]
	}
	s1 := settled(func() int { _, s := fdCount(t, w1); return s })
	_, s2 := fdCount(t, w2)
	if s2 != s1 {
		t.Fatalf("the worker forked during the exec has %d sockets, the one before it %d", s2, s1)
	}
	r = run(t, nil, "exec", strconv.Itoa(w2), "-c", "import sys; print(len(sys._pyglass_hub['sessions']))")
	want(t, r, 0)
	if r.Stdout != "1\n" {
		t.Fatalf("the new worker inherited a session: %s", r)
	}

	// A timing wrapper on the view of every worker.
	for _, w := range []int{w1, w2} {
		r = run(t, nil, "exec", strconv.Itoa(w), "-c", `import sys, time
import functools
app = sys.modules['__main__'].app
timings = []
def timed(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        t0 = time.time()
        try:
            return view(*args, **kwargs)
        finally:
            timings.append(time.time() - t0)
    return wrapper
app.view_functions['index'] = timed(app.view_functions['index'])
print('wrapped')`)
		want(t, r, 0)
	}
	for i := 0; i < 6; i++ {
		if code, body := httpGet(t, port); code != 200 || body != "ok\n" {
			t.Fatalf("request %d after wrapping the view: %d %q", i, code, body)
		}
	}
	healthy(t, tg)
}

// startUWSGI runs a uwsgi master with one worker (Debian's uwsgi-core and
// its python3 plugin, which embeds libpython3.11) serving a WSGI app on
// port, with extra options; it is killed when the test ends.
func startUWSGI(t *testing.T, port int64, extra ...string) int {
	t.Helper()
	dir := t.TempDir()
	app := "def application(env, start):\n    start('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok\\n']\n"
	if err := os.WriteFile(dir+"/app.py", []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--plugin", "python3", "--master", "--workers", "1", "--enable-threads",
		"--http-socket", fmt.Sprintf("127.0.0.1:%d", port), "--chdir", dir, "--wsgi-file", "app.py", "--disable-logging"}, extra...)
	cmd := exec.Command("uwsgi-core", args...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting uwsgi: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("uwsgi output:\n%s", errb.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := &http.Client{Timeout: 5 * time.Second}
		if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
			resp.Body.Close()
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("uwsgi does not answer on port %d", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// needUWSGI skips t unless Debian's uwsgi and its python3 plugin are
// installed.
func needUWSGI(t *testing.T) {
	t.Helper()
	debianWith(t, "uwsgi-core uwsgi-plugin-python3", "sys")
	if _, err := exec.LookPath("uwsgi-core"); err != nil {
		testenv.Skipf(t, "uwsgi-core is not installed (apt-get install uwsgi-core uwsgi-plugin-python3)")
	}
	if _, err := os.Stat("/usr/lib/uwsgi/plugins/python3_plugin.so"); err != nil {
		testenv.Skipf(t, "uwsgi's python3 plugin is not installed (apt-get install uwsgi-plugin-python3)")
	}
}

// uwsgiWith starts uwsgi (startUWSGI), with option when on, and returns
// its port, its master and its worker.
func uwsgiWith(t *testing.T, option string, on bool) (port int64, master, worker int) {
	t.Helper()
	var extra []string
	if on {
		extra = append(extra, option)
	}
	port = freePort(t)
	master = startUWSGI(t, port, extra...)
	return port, master, waitChildren(t, master, 1)[0]
}

// TestUWSGI: a uwsgi worker respawned (its predecessor killed) while an
// exec runs in the master keeps nothing of the session: at once when
// uwsgi runs Python's fork handlers (py-call-osafterfork), else from the
// first pyglass session in the worker on (uwsgi forks in C).
func TestUWSGI(t *testing.T) {
	needUWSGI(t)
	for _, handlers := range []bool{true, false} {
		t.Run(fmt.Sprintf("py-call-osafterfork=%v", handlers), func(t *testing.T) {
			port, master, w1 := uwsgiWith(t, "--py-call-osafterfork", handlers)
			// (settled: the worker closes the connection of the readiness check)
			s1 := settled(func() int { _, s := fdCount(t, w1); return s })
			// Without fork handlers, the worker uwsgi forks at the instant
			// the exec's loop holds the GIL inherits it held by a thread it
			// does not have; pyglass ends it after the session and says so
			// (TestUWSGIStuckWorker), and uwsgi forks the next one with no
			// session running. CI once took such an ended worker, a
			// zombie, for the new one. Then the scenario is played again
			// on the next worker: the one tested must be forked during an
			// exec.
			var r result
			var w2 int
			old := map[int]bool{}
			fresh := func() (out []int) {
				for _, c := range children(t, master) {
					if !old[c] {
						out = append(out, c)
					}
				}
				return out
			}
			for w, try := w1, 1; ; try++ {
				r = run(t, nil, "exec", strconv.Itoa(master), "-c", fmt.Sprintf(`import os, signal, time
os.kill(%d, signal.SIGKILL)`, w)+fmt.Sprintf(untilNewChild, fmt.Sprintf("set([%d])", w)))
				want(t, r, 0)
				if r.Stdout != "new child\n" {
					t.Fatalf("exec: %s", r)
				}
				old[w] = true
				ended := 0
				for _, c := range strings.Split(r.Stderr, "ended process ")[1:] {
					if n, err := strconv.Atoi(strings.SplitN(c, ":", 2)[0]); err == nil {
						t.Logf("pyglass ended worker %d, forked while the exec held the GIL", n)
						old[n] = true
						ended++
					}
				}
				w2 = 0
				deadline := time.Now().Add(30 * time.Second)
				for w2 == 0 {
					if c := fresh(); len(c) == 1 {
						w2 = c[0]
					}
					if time.Now().After(deadline) {
						t.Fatalf("uwsgi did not respawn its worker")
					}
					time.Sleep(50 * time.Millisecond)
				}
				if ended == 0 {
					break
				}
				if try == 3 {
					t.Fatalf("three workers in a row were forked while an exec held the GIL")
				}
				w = w2
			}
			if handlers {
				// Settled as s1 was: CI once read 0 sockets at the
				// instant the worker appeared (uwsgi's output showed
				// no second respawn: the worker was not ended).
				if s2 := settled(func() int { _, s := fdCount(t, w2); return s }); s2 != s1 {
					t.Fatalf("the worker forked during the exec has %d sockets, the one before it %d; its descriptors: %s", s2, s1, fdLinks(w2))
				}
			}
			r = run(t, nil, "exec", strconv.Itoa(w2), "-c", "import sys; print(len(sys._pyglass_hub['sessions']))")
			want(t, r, 0)
			if r.Stdout != "1\n" {
				t.Fatalf("the new worker's session shares a hub with another: %s", r)
			}
			// Forked in C, the worker keeps the thread states of the
			// master's agent threads, whose frames point into stacks it
			// reuses: sys._current_frames() would crash it (it did, at
			// the end of the exec above, before pyglass recorded such a
			// fork). Every later session, a census (which reads other
			// threads' frames) and stacks must leave it running.
			for i := 0; i < 3; i++ {
				r = run(t, nil, "exec", strconv.Itoa(w2), "-c", "import sys; print(getattr(sys, '_pyglass_stale_threads', False))")
				want(t, r, 0)
				if want := map[bool]string{true: "True\n", false: "False\n"}[!handlers]; r.Stdout != want {
					t.Fatalf("exec %d: sys._pyglass_stale_threads: %q, want %v", i, r.Stdout, !handlers)
				}
			}
			r = run(t, nil, "objects", strconv.Itoa(w2))
			want(t, r, 0)
			if !handlers && !strings.Contains(r.Stdout, "forked without Python's after-fork code") {
				t.Errorf("objects in a worker forked in C does not say why other threads' frames are not read:\n%s", r.Stdout)
			}
			r = run(t, nil, "stacks", "--json", strconv.Itoa(w2))
			want(t, r, 0)
			var d struct {
				Threads []struct {
					TID   int    `json:"tid"`
					State string `json:"state"`
				} `json:"threads"`
			}
			if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
				t.Fatalf("stacks --json: %v\n%s", err, r.Stdout)
			}
			gone := 0
			for _, th := range d.Threads {
				if th.State == "gone" {
					gone++
				}
			}
			if handlers && gone != 0 || !handlers && gone == 0 {
				t.Errorf("stacks lists %d gone thread states in the worker (with fork handlers %v): %s", gone, handlers, r.Stdout)
			}
			if got := fresh(); len(got) != 1 || got[0] != w2 {
				t.Fatalf("the worker %d died (master's children now %v, not counting those ended before %v)", w2, got, old)
			}
			n := settled(func() int { _, s := fdCount(t, w2); return s })
			if n != s1 {
				t.Fatalf("after an exec in it, the worker forked during the exec has %d sockets, the one before it %d", n, s1)
			}
			if code, body := httpGet(t, port); code != 200 || body != "ok\n" {
				t.Fatalf("uwsgi answered %d %q", code, body)
			}
		})
	}
}

// TestUWSGIStuckWorker: uwsgi forks its workers in C. Code that holds the
// GIL in the master while it respawns one (the exec below, busy for 2 s
// right after killing the worker) leaves the new worker waiting for good
// for a GIL held by a thread it does not have (uwsgi issue 1149; checked
// by hand: that worker never answers). Without py-call-uwsgi-fork-hooks
// pyglass warns as the session starts and, after it, ends that worker;
// uwsgi's next one serves. With the hooks (the master takes the GIL
// before forking) there is no warning and the worker forked during the
// session lives and serves.
func TestUWSGIStuckWorker(t *testing.T) {
	needUWSGI(t)
	for _, hooks := range []bool{false, true} {
		t.Run(fmt.Sprintf("py-call-uwsgi-fork-hooks=%v", hooks), func(t *testing.T) {
			port, master, w1 := uwsgiWith(t, "--py-call-uwsgi-fork-hooks", hooks)
			// The master's respawn comes within milliseconds of the kill,
			// while the loop holds the GIL (the master's own thread does
			// not ask for it); the code prints the master's children at
			// its end: the worker forked during the session.
			r := run(t, nil, "exec", strconv.Itoa(master), "-c", fmt.Sprintf(`import os, signal, time
os.kill(%d, signal.SIGKILL)
t = time.time()
while time.time() < t + 2:
    pass
print(open('/proc/self/task/%%d/children' %% os.getpid()).read().strip())`, w1))
			want(t, r, 0)
			forked, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
			if err != nil || forked == w1 {
				t.Fatalf("uwsgi did not respawn its worker once during the session: %s", r)
			}
			warned := strings.Contains(r.Stderr, "uwsgi master without py-call-uwsgi-fork-hooks")
			ended := strings.Contains(r.Stderr, fmt.Sprintf("ended process %d:", forked))
			if warned == hooks || ended == hooks {
				t.Fatalf("with the fork hooks %v: warned %v, ended the worker forked during the session %v; want %v, %v\n%s", hooks, warned, ended, !hooks, !hooks, r)
			}
			// (the ended worker is the master's until it reaps it)
			w := waitChildren(t, master, 1)[0]
			for deadline := time.Now().Add(10 * time.Second); !hooks && w == forked && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				w = waitChildren(t, master, 1)[0]
			}
			if hooks && w != forked || !hooks && w == forked {
				t.Fatalf("the master's worker is %d, the one forked during the session %d (fork hooks %v)", w, forked, hooks)
			}
			for i := 0; i < 3; i++ {
				if code, body := httpGet(t, port); code != 200 || body != "ok\n" {
					t.Fatalf("uwsgi answered %d %q", code, body)
				}
			}
		})
	}
}
