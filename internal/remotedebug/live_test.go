package remotedebug_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/remotedebug"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/target/live"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// target is a started 3.14+ process with what the tests need.
type target struct {
	tg      *testenv.Target
	mem     *live.Process
	runtime uint64
	dir     string // the script's directory, as the target sees it
	hostDir string // the same, as we see it
}

// forEach314 runs fn on every interpreter testenv finds that has PEP 768
// (3.14 PIE and not, 3.15, 3.15d in the sid root).
func forEach314(t *testing.T, fn func(t *testing.T, in testenv.Interp)) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 14) {
			testenv.Skipf(t, "%s has no PEP 768 remote execution (3.14+)", in.Label)
		}
		fn(t, in)
	})
}

// start runs script on in.
func start(t *testing.T, in testenv.Interp, script string, opts ...testenv.StartOption) *target {
	t.Helper()
	tg := testenv.Start(t, in, script, opts...)
	img, err := layouttest.FindImage(tg.PID)
	if err != nil {
		t.Fatal(err)
	}
	rt := img.Sections[".PyRuntime"][0]
	if rt == 0 {
		t.Fatalf("no .PyRuntime section in the %s image", in.Label)
	}
	mem, err := live.Open(tg.PID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return &target{
		tg: tg, mem: mem, runtime: rt,
		dir: filepath.Dir(tg.Script), hostDir: filepath.Dir(tg.ScriptHost),
	}
}

// script writes a remote script that writes the native id of the thread
// running it into a marker file; it returns the script's path in the
// target and the marker's path on the host.
func (tt *target) script(t *testing.T, name string) (inPath, hostMarker string) {
	t.Helper()
	marker := filepath.Join(tt.dir, name+".marker")
	// Only the built-in _thread, already imported: a script may run
	// inside another's (at a bytecode boundary of the first, taking a
	// second request), and one importing threading for the first time
	// would give the second a partially initialised module.
	src := fmt.Sprintf("import _thread\nwith open(%q, 'w') as f:\n    f.write(str(_thread.get_native_id()))\n", marker)
	if err := os.WriteFile(filepath.Join(tt.hostDir, name+".py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(tt.dir, name+".py"), filepath.Join(tt.hostDir, name+".marker")
}

// waitMarker waits up to d for the marker and returns its content.
func waitMarker(path string, d time.Duration) (string, bool) {
	deadline := time.Now().Add(d)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b), true
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runBound is how long a test waits for a script that must run. The
// thread takes a request within microseconds of its next eval-breaker
// check; what may take long on a loaded machine is the script's file
// I/O. A script that must not run is waited for a shorter, fixed time.
const runBound = 10 * time.Second

// threadWait says what thread tid of process pid is doing: its state and
// the kernel function it waits in.
func threadWait(pid, tid int) string {
	state := "?"
	if st, err := procfs.New(pid).TaskStat(tid); err == nil {
		state = string(st.State)
	}
	wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/wchan", pid, tid))
	return fmt.Sprintf("state %s, waiting in %q", state, wchan)
}

func healthy(t *testing.T, tt *target) {
	t.Helper()
	if err := tt.tg.Healthy(); err != nil {
		t.Fatal(err)
	}
}

// waitOnlyRunning waits until thread busy is the only one of the target
// not asleep. Just after printing READY the main thread may still be
// running Python on its way into time.sleep.
func (tt *target) waitOnlyRunning(t *testing.T, busy int) {
	t.Helper()
	testenv.WaitUntil(t, 10*time.Second, "only the busy thread runs", func() bool {
		tids := testenv.Tasks(tt.tg.PID)
		for _, tid := range tids {
			if tid != busy && !testenv.Asleep(tt.tg.PID, tid) {
				return false
			}
		}
		return len(tids) > 0
	})
}

// readyField returns the integer after key= in the READY line.
func readyField(t *testing.T, tg *testenv.Target, key string) int {
	t.Helper()
	for _, line := range tg.Stdout() {
		if !strings.HasPrefix(line, "READY") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatalf("no %s= in the READY line: %q", key, tg.Stdout())
	return 0
}

const busyMain = `
import threading
print("READY tid=%d" % threading.get_native_id())
x = 0
while True:
    x += 1
`

const busyWorker = `
import threading, time
ready = threading.Event()
tid = []
def work():
    tid.append(threading.get_native_id())
    ready.set()
    x = 0
    while True:
        x += 1
threading.Thread(target=work, daemon=True).start()
ready.wait()
print("READY tid=%d" % tid[0])
while True:
    time.sleep(3600)
`

func TestRequestRuns(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		for _, tc := range []struct{ name, src string }{
			{"busy-main", busyMain},
			{"busy-worker", busyWorker},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tt := start(t, in, tc.src)
				want := readyField(t, tt.tg, "tid")
				on, err := remotedebug.Enabled(tt.mem, tt.runtime)
				if err != nil || !on {
					t.Fatalf("Enabled = %v, %v; want true", on, err)
				}
				tt.waitOnlyRunning(t, want)
				pick, err := remotedebug.PickThread(tt.mem, tt.tg.PID, tt.runtime)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("picked tid %d state %c: %s", pick.TID, pick.State, pick.Reason)
				if pick.Thread.NativeID != want || !pick.Likely {
					t.Fatalf("picked native id %d (likely %v), want the busy thread %d", pick.Thread.NativeID, pick.Likely, want)
				}
				path, marker := tt.script(t, "run")
				start := time.Now()
				if err := remotedebug.Request(tt.mem, tt.runtime, pick.Thread.Addr, path); err != nil {
					t.Fatal(err)
				}
				// A liveness bound, not a speed one: the thread takes the
				// request at once, but opening and writing the marker may
				// wait for a disk busy with other tests' cores.
				got, ok := waitMarker(marker, runBound)
				if !ok {
					p, err := remotedebug.Pending(tt.mem, tt.runtime, pick.Thread.Addr)
					t.Fatalf("marker absent %v after the request (request still pending: %v, %v; thread %s); stderr:\n%s",
						runBound, p, err, threadWait(tt.tg.PID, pick.TID), tt.tg.Stderr())
				}
				t.Logf("script ran after %v", time.Since(start))
				if got != strconv.Itoa(want) {
					t.Errorf("script ran in thread %s, want %d", got, want)
				}
				if p, err := remotedebug.Pending(tt.mem, tt.runtime, pick.Thread.Addr); err != nil || p {
					t.Errorf("Pending after the run = %v, %v; want false", p, err)
				}
				// A second request on the same thread works too.
				path2, marker2 := tt.script(t, "again")
				if err := remotedebug.Request(tt.mem, tt.runtime, pick.Thread.Addr, path2); err != nil {
					t.Fatal(err)
				}
				if _, ok := waitMarker(marker2, runBound); !ok {
					t.Fatalf("second request did not run within %v", runBound)
				}
				healthy(t, tt)
			})
		}
	})
}

func TestRequestRefuses(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		tt := start(t, in, busyMain)
		main, err := remotedebug.MainThread(tt.mem, tt.runtime)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"", "/tmp/a\x00b", "/" + strings.Repeat("x", 511)} {
			if err := remotedebug.Request(tt.mem, tt.runtime, main, p); !errors.Is(err, remotedebug.ErrBadPath) {
				t.Errorf("Request(%.20q) = %v, want ErrBadPath", p, err)
			}
		}
		if err := remotedebug.Request(tt.mem, tt.runtime, main+8, "/tmp/x.py"); err == nil {
			t.Error("Request on a bogus thread state succeeded")
		}
		healthy(t, tt)
	})
}

func TestDisabled(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		reexec := `
import os, sys
if "-X" not in sys.orig_argv:
    os.execv(sys.executable, [sys.executable, "-X", "disable-remote-debug", "-u", __file__])
` + busyMain
		for _, tc := range []struct {
			name string
			src  string
			opts []testenv.StartOption
		}{
			{"env", busyMain, []testenv.StartOption{testenv.Env("PYTHON_DISABLE_REMOTE_DEBUG=1")}},
			{"X-option", reexec, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tt := start(t, in, tc.src, tc.opts...)
				on, err := remotedebug.Enabled(tt.mem, tt.runtime)
				if err != nil || on {
					t.Fatalf("Enabled = %v, %v; want false", on, err)
				}
				main, err := remotedebug.MainThread(tt.mem, tt.runtime)
				if err != nil {
					t.Fatal(err)
				}
				path, marker := tt.script(t, "never")
				if err := remotedebug.Request(tt.mem, tt.runtime, main, path); !errors.Is(err, remotedebug.ErrDisabled) {
					t.Fatalf("Request = %v, want ErrDisabled", err)
				}
				if p, err := remotedebug.Pending(tt.mem, tt.runtime, main); err != nil || p {
					t.Errorf("Pending = %v, %v after a refused request", p, err)
				}
				if _, ok := waitMarker(marker, 300*time.Millisecond); ok {
					t.Error("script ran in a target with remote debugging off")
				}
				healthy(t, tt)
			})
		}
	})
}

func TestCancel(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		// The main thread wakes up every 0.3s and goes round a Python loop,
		// so a request not cancelled runs within about 0.3s.
		tt := start(t, in, `
import time
print("READY")
while True:
    time.sleep(0.3)
`)
		main, err := remotedebug.MainThread(tt.mem, tt.runtime)
		if err != nil {
			t.Fatal(err)
		}
		pick, err := remotedebug.PickThread(tt.mem, tt.tg.PID, tt.runtime)
		if err != nil {
			t.Fatal(err)
		}
		if pick.Thread.Addr != main {
			t.Errorf("picked %#x, want the only (main) thread %#x", pick.Thread.Addr, main)
		}
		// The thread may wake up between two of the calls below and
		// take the request (about one run in a hundred): such a try
		// proves nothing and is played again, at most three times.
		tested := false
		for try := 0; try < 3 && !tested; try++ {
			path, marker := tt.script(t, fmt.Sprintf("cancelled%d", try))
			if err := remotedebug.Request(tt.mem, tt.runtime, main, path); err != nil {
				t.Fatal(err)
			}
			path2, marker2 := tt.script(t, fmt.Sprintf("second%d", try))
			err := remotedebug.Request(tt.mem, tt.runtime, main, path2)
			if err == nil {
				// Right only if the first request was taken in between:
				// then it runs, and the second runs after it.
				_, ran := waitMarker(marker, runBound)
				_, ran2 := waitMarker(marker2, runBound)
				if !ran || !ran2 {
					t.Fatalf("second Request while the first was pending = nil, want ErrPending (first ran %v, second ran %v)", ran, ran2)
				}
				t.Logf("try %d: the thread took the request before the second Request", try)
				continue
			}
			if !errors.Is(err, remotedebug.ErrPending) {
				t.Errorf("second Request while pending = %v, want ErrPending", err)
			}
			out, err := remotedebug.Cancel(tt.mem, tt.runtime, main)
			if err != nil {
				t.Fatal(err)
			}
			if out != remotedebug.Cancelled {
				t.Logf("try %d: the thread took the request before Cancel (outcome %d)", try, out)
				if _, ran := waitMarker(marker, runBound); !ran {
					t.Fatalf("Cancel says the request was taken (outcome %d), but it did not run within %v", out, runBound)
				}
				continue
			}
			tested = true
			if _, ran := waitMarker(marker, 1200*time.Millisecond); ran {
				t.Fatal("cancelled script ran")
			}
			if _, ran := waitMarker(marker2, 10*time.Millisecond); ran {
				t.Fatal("the refused second request ran")
			}
			if again, err := remotedebug.Cancel(tt.mem, tt.runtime, main); err != nil || again != remotedebug.Taken {
				t.Errorf("Cancel with nothing pending = %v, %v; want Taken", again, err)
			}
		}
		if !tested {
			t.Skip("the thread took every request before it could be cancelled (three tries); cannot test cancellation this run")
		}
		// Control: the same sleeping thread does take a request at wake-up.
		path2, marker2 := tt.script(t, "control")
		if err := remotedebug.Request(tt.mem, tt.runtime, main, path2); err != nil {
			t.Fatal(err)
		}
		if _, ran := waitMarker(marker2, runBound); !ran {
			t.Fatalf("request on the sleeping thread did not run within %v (it wakes every 0.3 s); stderr:\n%s", runBound, tt.tg.Stderr())
		}
		healthy(t, tt)
	})
}
