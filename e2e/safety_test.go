package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
	"golang.org/x/sys/unix"
)

func anyInterp(t *testing.T, labels ...string) testenv.Interp {
	t.Helper()
	for _, l := range labels {
		if in, ok := testenv.Lookup(l); ok {
			return in
		}
	}
	all := testenv.Interpreters()
	if len(all) == 0 {
		t.Skip("no Python interpreter on this machine")
	}
	return all[len(all)-1]
}

// TestSignalsToPyglass: SIGINT, SIGTERM or SIGKILL to pyglass at any
// moment of an exec (during injection, while waiting, while the code runs)
// leave the target running, untraced, unstopped, and its system calls
// undisturbed.
func TestSignalsToPyglass(t *testing.T) {
	forLabels(t, []string{"2.7", "3.12"}, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("select", "interval=0.3", "threads=2"), testenv.PrivateTmp())
		before := pyglassDirs(t, tg.PID, "/tmp")
		bin := testenv.BuildPyglass(t)
		sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL}
		for i := 0; i < 36; i++ {
			sig := sigs[i%3]
			delay := time.Duration(i/3) * 4 * time.Millisecond // 0..44 ms: every phase
			out, _ := signalAfter(t, sig, delay, bin, "exec", strconv.Itoa(tg.PID), "-c", "import time; time.sleep(0.3); print('done')")
			// Give an abandoned agent time to notice and clean up.
			if err := tg.Healthy(); err != nil {
				t.Fatalf("after %v at %v: %v (pyglass said %q)", sig, delay, err, out)
			}
		}
		// An agent whose pyglass vanished stops and cleans up within 2 s:
		// the target is back to its own 3 threads.
		testenv.WaitUntil(t, 10*time.Second, "every abandoned agent has ended", func() bool { return len(testenv.Tasks(tg.PID)) == 3 })
		healthy(t, tg)
		tg.WaitLine("TICK", 5*time.Second)
		noTraces(t, tg)
		// A pyglass killed before its agent started cannot clean up;
		// the next run removes what it left (once it is 5 s old and
		// its lock is free). And the target still works. Let what was
		// left age past that.
		var newest time.Time
		for _, d := range added(before, pyglassDirs(t, tg.PID, "/tmp")) {
			if fi, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/%s", tg.PID, d)); err == nil && fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
		time.Sleep(time.Until(newest.Add(5*time.Second + 500*time.Millisecond)))

		r := run(t, nil, "exec", strconv.Itoa(tg.PID), "-c", "print('still fine')")
		want(t, r, 0)
		if d := added(before, pyglassDirs(t, tg.PID, "/tmp")); len(d) != 0 {
			t.Fatalf("left behind in the target's /tmp: %v", d)
		}
	})
}

// TestSignalsDuringRead: SIGINT or SIGTERM to pyglass at any moment of a
// stacks (which pauses the threads) or a blocking record, from its first
// millisecond on, leaves the target running, untraced and unstopped. A
// command registers its signals in the background and takes them once it
// has attached: a signal before that ends pyglass, which has not touched
// the target yet.
func TestSignalsDuringRead(t *testing.T) {
	forLabels(t, []string{"2.7", "3.12"}, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("select", "interval=0.3", "threads=2"))
		bin := testenv.BuildPyglass(t)
		out := filepath.Join(t.TempDir(), "p.txt")
		pid := strconv.Itoa(tg.PID)
		commands := [][]string{
			{"stacks", pid},
			{"record", pid, "--blocking", "--rate", "max", "--duration", "1s", "-o", out},
		}
		sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}
		handled := 0
		for i := 0; i < 48; i++ {
			args, sig := commands[i%2], sigs[(i/2)%2]
			delay := time.Duration(i/4) * 500 * time.Microsecond // 0..5.5 ms
			out, killed := signalAfter(t, sig, delay, append([]string{bin}, args...)...)
			if !killed {
				handled++
			}
			if err := tg.Healthy(); err != nil {
				t.Fatalf("%s, %v after %v: %v (pyglass said %q)", args[0], sig, delay, err, out)
			}
		}
		t.Logf("%d of 48 runs ended by pyglass itself (the signal taken, or the work done first); the others were killed by the signal before attaching", handled)
		tg.WaitLine("TICK", 5*time.Second)
		noTraces(t, tg)
	})
}

// signalAfter runs pyglass's command argv, sends it sig after delay and
// waits (10 s at most) for it to end; it returns what pyglass printed and
// whether the signal killed it.
func signalAfter(t *testing.T, sig syscall.Signal, delay time.Duration, argv ...string) (out string, killed bool) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay)
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("pyglass %s did not stop within 10 s of %v", argv[1], sig)
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return buf.String(), ok && ws.Signaled()
}

// TestStoppedTargetStaysStopped: a target the user stopped is refused
// with a clear message and stays stopped.
func TestStoppedTargetStaysStopped(t *testing.T) {
	in := anyInterp(t, "3.12")
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
	syscall.Kill(tg.PID, syscall.SIGSTOP)
	waitState(t, tg.PID, 'T')
	r := run(t, nil, "exec", strconv.Itoa(tg.PID), "-c", "print(1)")
	want(t, r, 3)
	oneLineErr(t, r, "stopped")
	if s := state(tg.PID); s != 'T' {
		t.Fatalf("target state %c after exec, want T", s)
	}
	syscall.Kill(tg.PID, syscall.SIGCONT)
	waitState(t, tg.PID, 'S')
	healthy(t, tg)
}

func state(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

func waitState(t *testing.T, pid int, s byte) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if state(pid) == s {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never reached state %c (is %c)", pid, s, state(pid))
}

// gilHolder is a target that, for each line "S" on its stdin, holds the
// GIL in one C call for about S seconds ("HOLDING", then "DONE s").
const gilHolder = `import sys, threading, time
try:
    range = xrange
except NameError:
    pass
threading.Thread(target=lambda: None).start()
t0 = time.time()
sum(range(3000000))
per = (time.time() - t0) / 3000000
print("READY")
sys.stdout.flush()
while True:
    line = sys.stdin.readline()
    if not line:
        break
    n = int(float(line) / per)
    print("HOLDING")
    sys.stdout.flush()
    t0 = time.time()
    sum(range(n))
    print("DONE %.1f" % (time.time() - t0))
    sys.stdout.flush()
`

// TestGILHeldTimesOut: when a thread holds the GIL in a long C call, exec
// gives up after --timeout with exit 5, names that thread, and the code
// never runs later.
func TestGILHeldTimesOut(t *testing.T) {
	forLabels(t, []string{"2.7", "3.12"}, func(t *testing.T, in testenv.Interp) {
		// The marker is made in the target's private /tmp: look for it there.
		marker := fmt.Sprintf("/tmp/pyglass-e2e-marker-%d", time.Now().UnixNano())
		tg := testenv.Start(t, in, gilHolder, testenv.PrivateTmp()) // only this test makes channels in its /tmp
		before := pyglassDirs(t, tg.PID, "/tmp")
		tg.Send("4") // hold the GIL in one C call for about 4 s
		tg.WaitLine("HOLDING", 10*time.Second)
		// In the C call once the main thread has run 50 ms since.
		since := testenv.CPUTime(tg.PID, tg.PID)
		testenv.WaitUntil(t, 10*time.Second, "the main thread runs its C call", func() bool {
			return testenv.BlockedIn(tg.PID, tg.PID) < 0 && testenv.CPUTime(tg.PID, tg.PID)-since > 50*time.Millisecond
		})
		r := run(t, nil, "exec", strconv.Itoa(tg.PID), "--timeout", "1s", "-c", fmt.Sprintf("open(%q, 'w').write('ran')", marker))
		want(t, r, 5)
		oneLineErr(t, r, "GIL")
		if !strings.Contains(r.Stderr, strconv.Itoa(tg.PID)) || !strings.Contains(r.Stderr, "MainThread") {
			t.Fatalf("the message does not name the thread holding the GIL (%d, MainThread): %q", tg.PID, r.Stderr)
		}
		healthy(t, tg)
		done := tg.WaitLine("DONE", 60*time.Second)
		t.Logf("the C call took %s s", strings.Fields(done)[1])
		time.Sleep(time.Second)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", tg.PID, marker)); err == nil {
			t.Fatal("the code ran later, after pyglass had given up")
		}
		if d := added(before, pyglassDirs(t, tg.PID, "/tmp")); len(d) != 0 {
			t.Fatalf("left behind in the target's /tmp: %v", d)
		}
		healthy(t, tg)
		// The check above can fail: the same code given now does run.
		r = run(t, nil, "exec", strconv.Itoa(tg.PID), "-c", fmt.Sprintf("open(%q, 'w').write('ran')", marker))
		want(t, r, 0)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", tg.PID, marker)); err != nil {
			t.Fatalf("the marker check looks in the wrong place: %v", err)
		}
	})
}

// TestPrivateChannel: the directory is fresh, 0700, owned by the target's
// user, in the target's mount namespace, and removed afterwards; works for
// a target running as nobody with its own private /tmp and for one in its
// own PID namespace.
func TestPrivateChannel(t *testing.T) {
	check := `import os, stat, re
for base in ('/tmp', '/var/tmp', '/dev/shm'):
    try:
        names = os.listdir(base)
    except OSError:
        continue
    for n in names:
        if re.match(r'^pyglass-[0-9a-f]{24}$', n):
            st = os.stat(os.path.join(base, n))
            print('%s %s %o %d %d' % (base, n, stat.S_IMODE(st.st_mode), st.st_uid, os.geteuid()))
`
	in := anyInterp(t, "3.12")
	cases := []struct {
		name    string
		private bool
		opts    []testenv.StartOption
	}{
		{"root", false, nil},
		{"nobody", false, []testenv.StartOption{testenv.AsUser("nobody")}},
		{"nobody-private-tmp", true, []testenv.StartOption{testenv.AsUser("nobody"), testenv.PrivateTmp()}},
		{"pid-namespace", true, []testenv.StartOption{testenv.NewPIDNS(), testenv.PrivateTmp()}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), c.opts...)
			hostBefore := pyglassDirs(t, 1, "/tmp")
			before := pyglassDirs(t, tg.PID, "/tmp")
			r := run(t, nil, "exec", strconv.Itoa(tg.PID), "-c", check)
			want(t, r, 0)
			var mine []string
			ownOK := false
			for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
				f := strings.Fields(line)
				if len(f) != 5 || f[0] != "/tmp" || contains(before, f[1]) {
					continue
				}
				mine = append(mine, f[1])
				if f[2] != "700" {
					t.Fatalf("channel directory %s has mode %s, want 700: %s", f[1], f[2], r)
				}
				if f[3] == f[4] {
					ownOK = true
				}
			}
			if len(mine) == 0 || !ownOK {
				t.Fatalf("want a new 0700 directory owned by the target's user in its /tmp: %s", r)
			}
			if c.private && len(mine) != 1 {
				t.Fatalf("want exactly one directory in the private /tmp: %s", r)
			}
			for _, d := range pyglassDirs(t, tg.PID, "/tmp") {
				if contains(mine, d) {
					t.Fatalf("%s left behind in the target's /tmp", d)
				}
			}
			if c.private {
				if d := added(hostBefore, pyglassDirs(t, 1, "/tmp")); len(d) != 0 && contains(mine, d[0]) {
					t.Fatalf("the channel was made in the host's /tmp: %v", d)
				}
			}
			healthy(t, tg)
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// added returns the names in after that are not in before.
func added(before, after []string) []string {
	var out []string
	for _, a := range after {
		if !contains(before, a) {
			out = append(out, a)
		}
	}
	return out
}

// TestConcurrentExecs: several pyglass runs on one target at once all
// succeed with their own output.
func TestConcurrentExecs(t *testing.T) {
	in := anyInterp(t, "3.12")
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := run(t, nil, "exec", strconv.Itoa(tg.PID), "-c", fmt.Sprintf("import time\nfor j in range(3):\n    print('%d-%%d' %% j)\n    time.sleep(0.1)\n", i))
			if r.Code != 0 || r.Stdout != fmt.Sprintf("%d-0\n%d-1\n%d-2\n", i, i, i) {
				errs <- r.String()
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	healthy(t, tg)
	noTraces(t, tg)
}

// TestBadInput: each bad input gives a one-line error and its exit code,
// and the target is untouched.
func TestBadInput(t *testing.T) {
	in := anyInterp(t, "3.12")
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
	pid := strconv.Itoa(tg.PID)

	t.Run("no-such-pid", func(t *testing.T) {
		r := run(t, nil, "exec", "999999999", "-c", "pass")
		want(t, r, 3)
		oneLineErr(t, r, "no such process")
	})
	t.Run("not-a-number", func(t *testing.T) {
		r := run(t, nil, "exec", "abc", "-c", "pass")
		want(t, r, 2)
		oneLineErr(t, r, "not a process ID")
	})
	t.Run("zombie", func(t *testing.T) {
		cmd := exec.Command("sh", "-c", "sleep 0 & exec sleep 30")
		cmd.Start()
		defer cmd.Process.Kill()
		var zpid int
		for i := 0; i < 200 && zpid == 0; i++ {
			time.Sleep(10 * time.Millisecond)
			kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
			for _, k := range strings.Fields(string(kids)) {
				n, _ := strconv.Atoi(k)
				if state(n) == 'Z' {
					zpid = n
				}
			}
		}
		if zpid == 0 {
			t.Fatal("could not make a zombie")
		}
		r := run(t, nil, "exec", strconv.Itoa(zpid), "-c", "pass")
		want(t, r, 3)
		oneLineErr(t, r, "zombie")
	})
	t.Run("pyglass-itself", func(t *testing.T) {
		bin := testenv.BuildPyglass(t)
		out, err := exec.Command("sh", "-c", `exec "$0" exec $$ -c pass`, bin).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "itself") {
			t.Fatalf("want exit 3 saying it is pyglass itself, got %v %q", err, out)
		}
	})
	t.Run("bash", func(t *testing.T) {
		cmd := exec.Command("bash", "-c", "sleep 30")
		cmd.Start()
		defer cmd.Process.Kill()
		// Start returns once bash runs (exec done): nothing to wait for.
		r := run(t, nil, "exec", strconv.Itoa(cmd.Process.Pid), "-c", "pass")
		want(t, r, 3)
		oneLineErr(t, r, "not a Python process")
	})
	t.Run("go-program", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(dir+"/main.go", []byte("package main\n\nimport \"time\"\n\nfunc main() { time.Sleep(time.Minute) }\n"), 0o644)
		os.WriteFile(dir+"/go.mod", []byte("module sleeper\n\ngo 1.21\n"), 0o644)
		build := exec.Command("go", "build", "-o", dir+"/sleeper", ".")
		build.Dir = dir
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building a Go program: %v\n%s", err, out)
		}
		cmd := exec.Command(dir + "/sleeper")
		cmd.Start() // returns once the program runs (exec done)
		defer cmd.Process.Kill()
		r := run(t, nil, "exec", strconv.Itoa(cmd.Process.Pid), "-c", "pass")
		want(t, r, 3)
		oneLineErr(t, r, "not a Python process")
	})
	t.Run("already-traced", func(t *testing.T) {
		release := traceFromHere(t, tg.PID)
		defer release()
		r := run(t, nil, "exec", pid, "-c", "pass")
		want(t, r, 4)
		oneLineErr(t, r, "traced by")
	})
	t.Run("exits-while-running", func(t *testing.T) {
		tg2 := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
		r := run(t, nil, "exec", strconv.Itoa(tg2.PID), "-c", "import os, threading, time\nthreading.Timer(0.3, lambda: os._exit(0)).start()\ntime.sleep(5)\n")
		want(t, r, 3)
		oneLineErr(t, r, "exited")
	})
	t.Run("empty-script", func(t *testing.T) {
		r := run(t, nil, "exec", pid, "-c", "  \n")
		want(t, r, 2)
		oneLineErr(t, r, "empty")
		f := t.TempDir() + "/empty.py"
		os.WriteFile(f, nil, 0o644)
		r = run(t, nil, "exec", pid, f)
		want(t, r, 2)
		oneLineErr(t, r, "empty")
	})
	t.Run("missing-script", func(t *testing.T) {
		r := run(t, nil, "exec", pid, "/nonexistent/script.py")
		want(t, r, 2)
		oneLineErr(t, r, "no such file")
	})
	t.Run("10MB-code", func(t *testing.T) {
		code := "x = '" + strings.Repeat("a", 10<<20) + "'\nprint(len(x))\n"
		f := t.TempDir() + "/big.py"
		os.WriteFile(f, []byte(code), 0o644)
		r := run(t, nil, "exec", pid, f)
		want(t, r, 0)
		if r.Stdout != fmt.Sprintf("%d\n", 10<<20) {
			t.Fatalf("10 MB script: %s", r)
		}
	})
	healthy(t, tg)
	noTraces(t, tg)
}

// traceFromHere makes this test process the tracer of pid (as a debugger
// would be) until release is called.
func traceFromHere(t *testing.T, pid int) (release func()) {
	t.Helper()
	ready := make(chan error)
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer close(finished)
		err := unix.PtraceSeize(pid)
		ready <- err
		if err != nil {
			return
		}
		<-stop
		// PTRACE_DETACH needs a stopped tracee.
		unix.PtraceInterrupt(pid)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WALL, nil)
		if unix.PtraceDetach(pid) == nil {
			runtime.UnlockOSThread() // do not end the thread: Pdeathsig is per thread
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("seizing %d: %v", pid, err)
	}
	var once sync.Once
	return func() { once.Do(func() { close(stop); <-finished }) }
}

var _ = context.Background
