package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
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
// _thread, time, socket...), 100 execs and the leak reports leave the
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
			took := time.Since(t0)

			fds1, threads1 := settled(fds), settled(threads)
			r = run(t, nil, "exec", pid, "-c", threadingState)
			want(t, r, 0)
			if fds1 != fds0 || threads1 != threads0 || r.Stdout != threading0 {
				t.Fatalf("after %d execs and 5 leak reports: %d fds (was %d), %d thread states (was %d), threading _active/_limbo/_dangling/active_count %q (was %q)",
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
os.kill(os.getpid(), signal.SIGTTIN)
time.sleep(2)
print('done')`)
	want(t, r, 0)
	kids := waitChildren(t, tg.PID, 2)
	w2 := kids[0]
	if w2 == w1 {
		w2 = kids[1]
	}
	_, s1 := fdCount(t, w1)
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
