package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// uwsgiApp sleeps in handler_wait while serving a request.
const uwsgiApp = `import time


def handler_wait():
    time.sleep(30)


def application(env, start_response):
    handler_wait()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
`

// TestStacksUwsgiWorker: uwsgi (Debian's uwsgi-core and
// uwsgi-plugin-python3, on Debian's 3.11) forks its workers from the
// master after loading the app, without PyOS_AfterFork_Child: a worker's
// main thread state keeps the master's native_thread_id. Each worker is
// shown with its own id and a known state, in both modes, the one serving
// a request with the request's frames; the master's id never appears.
func TestStacksUwsgiWorker(t *testing.T) {
	forLabels(t, []string{"3.11-debian"}, func(t *testing.T, in testenv.Interp) {
		uwsgi, err := exec.LookPath("uwsgi")
		if err != nil {
			testenv.Skipf(t, "uwsgi is not installed (Debian: uwsgi-core, uwsgi-plugin-python3)")
		}
		if _, err := os.Stat("/usr/lib/uwsgi/plugins/python3_plugin.so"); err != nil {
			testenv.Skipf(t, "uwsgi's python3 plugin is not installed (Debian: uwsgi-plugin-python3)")
		}
		dir := t.TempDir()
		app := filepath.Join(dir, "app.py")
		if err := os.WriteFile(app, []byte(uwsgiApp), 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(uwsgi, "--plugin", "python3", "--master", "--processes", "2", "--http-socket", addr,
			"--wsgi-file", app, "--die-on-term")
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		master := cmd.Process.Pid
		t.Cleanup(func() {
			syscall.Kill(-master, syscall.SIGKILL)
			cmd.Wait()
			if t.Failed() {
				t.Logf("uwsgi's output:\n%s", log.String())
			}
		})
		var workers []string
		for try := 0; len(workers) < 2; try++ {
			if try == 500 {
				t.Fatalf("uwsgi started no 2 workers in 10 s")
			}
			time.Sleep(20 * time.Millisecond)
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
			workers = strings.Fields(string(b))
		}
		go func() {
			c := http.Client{Timeout: 20 * time.Second}
			if resp, err := c.Get("http://" + addr + "/"); err == nil {
				resp.Body.Close()
			}
		}()
		serving := 0
		for try := 0; serving == 0 && try < 200; try++ {
			time.Sleep(25 * time.Millisecond)
			for _, w := range workers {
				pid, _ := strconv.Atoi(w)
				d := stacksJSON(t, pid)
				if n := len(d.Threads[0].Frames); n > 0 && d.Threads[0].Frames[n-1].Function == "handler_wait" {
					serving = pid
				}
			}
		}
		if serving == 0 {
			t.Fatalf("no worker of %v ever served the request", workers)
		}
		for _, w := range workers {
			pid, _ := strconv.Atoi(w)
			for _, m := range [][]string{nil, {"--nonblocking"}} {
				d := stacksJSON(t, pid, m...)
				checkTIDs(t, pid, d, m)
				main := d.Threads[0]
				if !main.Main || main.TID != pid || main.State == "unknown" {
					t.Errorf("worker %d %v: main thread %+v, want its own tid and a known state (master %d)", pid, m, main, master)
				}
				for _, th := range d.Threads {
					if th.TID == master {
						t.Errorf("worker %d %v: thread %q shown with the master's pid", pid, m, th.Name)
					}
				}
				if pid == serving {
					if n := len(main.Frames); n < 2 || main.Frames[n-1].Function != "handler_wait" || main.Frames[n-2].Function != "application" {
						t.Errorf("serving worker %v: frames %s", m, fmtFrames(main.Frames))
					}
				}
			}
		}
	})
}
