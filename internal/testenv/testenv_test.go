package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestInterpreters(t *testing.T) {
	ins := Interpreters()
	for _, a := range Missing() {
		t.Logf("absent: %s: %s", a.Label, a.Reason)
	}
	if len(ins) == 0 {
		t.Skip("no Python interpreter found")
	}
	seen := map[string]bool{}
	for _, in := range ins {
		if seen[in.Label] {
			t.Errorf("duplicate label %q", in.Label)
		}
		seen[in.Label] = true
	}
	ForEach(t, func(t *testing.T, in Interp) {
		// The interpreter says its own version, whether libpython is a
		// separate mapping and whether it is a Py_DEBUG build.
		code := `import sys
f = open("/proc/self/maps")
maps = f.read()
f.close()
print("%d.%d %s %s" % (sys.version_info[0], sys.version_info[1], "libpython" in maps, hasattr(sys, "gettotalrefcount")))`
		out, err := in.Command("-c", code).CombinedOutput()
		if err != nil {
			t.Fatalf("running %s: %v\n%s", in.HostPath(), err, out)
		}
		py := map[bool]string{true: "True", false: "False"}
		want := fmt.Sprintf("%s %v %v", in.Version(), py[in.Shared], py[in.Debug])
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s reports %q, want %q", in.Label, got, want)
		}
		if _, err := os.Stat(in.HostPath()); err != nil {
			t.Errorf("HostPath: %v", err)
		}
	})
}

// exeOf returns the target of /proc/PID/exe.
func exeOf(t *testing.T, pid int) string {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatalf("reading exe of %d: %v", pid, err)
	}
	return exe
}

func checkIsInterp(t *testing.T, tg *Target) {
	t.Helper()
	want, err := filepath.EvalSymlinks(tg.Interp.HostPath())
	if err != nil {
		t.Fatal(err)
	}
	if got := exeOf(t, tg.PID); got != want {
		t.Errorf("PID %d runs %s, want %s", tg.PID, got, want)
	}
}

func noTrouble(t *testing.T, tg *Target) {
	t.Helper()
	for _, l := range tg.Stdout() {
		if strings.HasPrefix(l, "EXCEPTION") || strings.HasPrefix(l, "SHORT") {
			t.Errorf("target printed %q", l)
		}
	}
	if err := tg.Healthy(); err != nil {
		t.Error(err)
	}
}

func TestSleeperModes(t *testing.T) {
	ForEach(t, func(t *testing.T, in Interp) {
		for _, mode := range []string{"sleep", "select", "accept", "recv"} {
			t.Run(mode, func(t *testing.T) {
				tg := Start(t, in, Fixture(t, "sleeper.py"), Args(mode, "interval=0.1", "threads=2"))
				checkIsInterp(t, tg)
				if mode == "accept" {
					var port int
					for _, l := range tg.Stdout() {
						fmt.Sscanf(l, "PORT %d", &port)
					}
					c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
					if err != nil {
						t.Fatalf("connecting to the sleeper: %v", err)
					}
					c.Close()
					tg.WaitLine("ACCEPTED", 10*time.Second)
				}
				tg.WaitLine("TICK", 10*time.Second)
				tg.WaitLine("TICK", 10*time.Second)
				noTrouble(t, tg)
				if n := countTasks(t, tg.PID); n != 3 {
					t.Errorf("sleeper has %d threads, want 3", n)
				}
			})
		}
	})
}

func countTasks(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestSpinnerAndHeartbeat(t *testing.T) {
	ForEach(t, func(t *testing.T, in Interp) {
		sp := Start(t, in, Fixture(t, "spinner.py"), Args("py", "threads=1", "interval=0.2"))
		sp.WaitLine("SPIN", 10*time.Second)
		noTrouble(t, sp)
		sp.Kill()
		if done, _ := sp.Exited(); !done {
			t.Errorf("spinner still running after Kill")
		}

		hb := Start(t, in, Fixture(t, "heartbeat.py"))
		// The heartbeat beats every 5ms; on a loaded machine, give it time.
		deadline := time.Now().Add(10 * time.Second)
		for {
			hb.Send("stall")
			l := hb.WaitLine("STALL", 10*time.Second)
			var ms float64
			var beats int
			if _, err := fmt.Sscanf(l, "STALL max_ms=%g beats=%d", &ms, &beats); err != nil {
				t.Fatalf("parsing %q: %v", l, err)
			}
			if beats >= 5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("heartbeat beat only %d times in 10s", beats)
			}
			time.Sleep(50 * time.Millisecond)
		}
		hb.Send("reset")
		hb.WaitLine("RESET", 10*time.Second)
		noTrouble(t, hb)
	})
}

func TestStartOptions(t *testing.T) {
	marker, err := os.CreateTemp("/tmp", "pyglass-marker-")
	if err != nil {
		t.Fatal(err)
	}
	marker.Close()
	defer os.Remove(marker.Name())
	myMnt, _ := os.Readlink("/proc/self/ns/mnt")
	myPid, _ := os.Readlink("/proc/self/ns/pid")

	ForEach(t, func(t *testing.T, in Interp) {
		t.Run("AsUser", func(t *testing.T) {
			tg := Start(t, in, Fixture(t, "sleeper.py"), AsUser("nobody"))
			checkIsInterp(t, tg)
			if uid := statusField(t, tg.PID, "Uid:"); !strings.HasPrefix(uid, "65534") {
				t.Errorf("Uid: %q, want nobody's 65534", uid)
			}
			noTrouble(t, tg)
		})
		t.Run("PrivateTmp", func(t *testing.T) {
			tg := Start(t, in, Fixture(t, "sleeper.py"), PrivateTmp())
			checkIsInterp(t, tg)
			if mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", tg.PID)); mnt == myMnt {
				t.Errorf("target shares our mount namespace %s", mnt)
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", tg.PID, marker.Name())); err == nil && in.Chroot == "" {
				t.Errorf("target sees the host's %s: /tmp is not private", marker.Name())
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", tg.PID, tg.Script)); err != nil {
				t.Errorf("target cannot see its script: %v", err)
			}
			noTrouble(t, tg)
		})
		t.Run("NewPIDNS", func(t *testing.T) {
			tg := Start(t, in, Fixture(t, "sleeper.py"), NewPIDNS())
			checkIsInterp(t, tg)
			if tg.NSPID != 1 {
				t.Errorf("NSPID = %d, want 1", tg.NSPID)
			}
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", tg.PID)); ns == myPid {
				t.Errorf("target shares our PID namespace")
			}
			noTrouble(t, tg)
		})
		t.Run("InRoot", func(t *testing.T) {
			dir, opt := MinimalRoot(t, in)
			tg := Start(t, in, Fixture(t, "sleeper.py"), opt)
			if exe := exeOf(t, tg.PID); exe != filepath.Join(dir, in.Path) {
				t.Errorf("PID %d runs %s, want %s in the root", tg.PID, exe, in.Path)
			}
			if root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", tg.PID)); root != dir {
				t.Errorf("target's root is %q, want %q", root, dir)
			}
			if !strings.HasPrefix(tg.ScriptHost, dir+"/") {
				t.Errorf("script %s is not in the root %s", tg.ScriptHost, dir)
			}
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/usr/pyglass-test-write", tg.PID), nil, 0o644); err == nil {
				os.Remove(fmt.Sprintf("/proc/%d/root/usr/pyglass-test-write", tg.PID))
				t.Errorf("the bound /usr is writable")
			}
			noTrouble(t, tg)
		})
		t.Run("All", func(t *testing.T) {
			tg := Start(t, in, Fixture(t, "sleeper.py"), AsUser("nobody"), PrivateTmp(), NewPIDNS(),
				Env("PYGLASS_TEST_VAR=42"), Args("select", "interval=0.1"))
			checkIsInterp(t, tg)
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", tg.PID))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(env), "PYGLASS_TEST_VAR=42") {
				t.Errorf("Env not passed")
			}
			if tg.NSPID != 1 || !strings.HasPrefix(statusField(t, tg.PID, "Uid:"), "65534") {
				t.Errorf("NSPID %d, Uid %q", tg.NSPID, statusField(t, tg.PID, "Uid:"))
			}
			tg.WaitLine("TICK", 10*time.Second)
			noTrouble(t, tg)
		})
	})
}

func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestStartFailureIsReported(t *testing.T) {
	in := Interpreters()
	if len(in) == 0 {
		t.Skip("no Python interpreter found")
	}
	// A script that dies before READY: Start must fail with its stderr.
	// Run Start in a sub-test whose failure we expect via a fake TB.
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, in[0], "import sys\nsys.stderr.write('boom-marker\\n')\nsys.exit(3)\n", ReadyTimeout(10*time.Second))
	}()
	<-done
	ft.runCleanups()
	if !strings.Contains(ft.msg, "boom-marker") || !strings.Contains(ft.msg, "exited") {
		t.Errorf("Start failure message lacks stderr or exit: %q", ft.msg)
	}
}

// fakeTB records Fatal instead of failing the real test.
type fakeTB struct {
	testing.TB
	msg      string
	cleanups []func()
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Failed() bool              { return f.msg != "" }
func (f *fakeTB) Cleanup(fn func())         { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Logf(string, ...any)       {}
func (f *fakeTB) Fatal(args ...any)         { f.msg = fmt.Sprint(args...); runtimeGoexit() }
func (f *fakeTB) Fatalf(s string, a ...any) { f.msg = fmt.Sprintf(s, a...); runtimeGoexit() }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestSummary(t *testing.T) {
	recs := []record{
		{Label: "3.10", Test: "TestA", Status: Covered},
		{Label: "2.7", Test: "TestA", Status: Skipped, Reason: "no py2 support"},
		{Label: "2.7", Test: "TestB", Status: Skipped, Reason: "no py2 support"},
		{Label: "3.9", Test: "TestA", Status: Failed},
		{Label: "3.14-chroot", Test: "TestA", Status: Skipped, Reason: "absent: no root"},
		{Label: "3.15d-chroot", Test: "TestA", Status: Covered},
		{Label: "3.6", Test: "TestA", Status: Covered},
		{Label: "3.15-chroot", Test: "TestA", Status: Covered},
	}
	s := summary("x", recs)
	for _, want := range []string{
		"2.7              covered 0, skipped 2, failed 0",
		"skipped: no py2 support [TestA TestB]",
		"FAILED: TestA",
		"NOT COVERED by any test: 2.7 3.9 3.14-chroot",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	order := []string{"2.7 ", "3.6 ", "3.9 ", "3.10 ", "3.14-chroot ", "3.15-chroot ", "3.15d-chroot "}
	for i := 1; i < len(order); i++ {
		if strings.Index(s, order[i-1]) > strings.Index(s, order[i]) {
			t.Errorf("labels not in version order (%q after %q):\n%s", order[i-1], order[i], s)
		}
	}
}

func TestNestedSkipIsRecorded(t *testing.T) {
	if len(Interpreters()) == 0 {
		t.Skip("no Python interpreter found")
	}
	recMu.Lock()
	before := len(records)
	recMu.Unlock()
	ForEach(t, func(t *testing.T, in Interp) {
		t.Run("inner", func(t *testing.T) { Skipf(t, "nested skip self-test") })
		// A parallel subtest ends after fn returns: its outcome counts.
		t.Run("parallel", func(t *testing.T) {
			t.Parallel()
			Skipf(t, "nested skip self-test")
		})
	})
	recMu.Lock()
	defer recMu.Unlock()
	got := 0
	for _, r := range records[before:] {
		if r.Status == Skipped && r.Reason == "nested skip self-test" && (r.Test == "TestNestedSkipIsRecorded/inner" || r.Test == "TestNestedSkipIsRecorded/parallel") {
			got++
		}
	}
	if got != 2*len(Interpreters()) {
		t.Errorf("%d nested skips recorded, want %d: %+v", got, 2*len(Interpreters()), records[before:])
	}
	records = records[:before] // keep the self-test out of the summary
}
