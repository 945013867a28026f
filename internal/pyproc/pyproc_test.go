package pyproc_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
	"github.com/pyglass/pyglass/internal/testenv"
)

// checkPython compares what FindPython found with what the target says
// about itself.
func checkPython(t *testing.T, py *pyproc.Python, info pyproctest.Info, wantShared bool) {
	t.Helper()
	want := info.Version
	switch info.Level {
	case "alpha":
		want += fmt.Sprintf("a%d", info.Serial)
	case "beta":
		want += fmt.Sprintf("b%d", info.Serial)
	case "candidate":
		want += fmt.Sprintf("rc%d", info.Serial)
	}
	if got := py.Version.String(); got != want {
		t.Errorf("version %s (from %s), the target says %s", got, py.VersionSource, want)
	}
	wantSource := "PY_VERSION"
	if py.Version.AtLeast(3, 11) {
		wantSource = "Py_Version"
	}
	if py.VersionSource != wantSource {
		t.Errorf("version found from %s, want %s", py.VersionSource, wantSource)
	}
	if py.Shared != wantShared {
		t.Errorf("Shared = %v, want %v (path %s)", py.Shared, wantShared, py.Path)
	}
	if py.Shared != info.Shared {
		t.Errorf("Shared = %v, but the target's maps say %v", py.Shared, info.Shared)
	}
	if got, ok := py.Symbol("PyRun_SimpleString"); !ok || got != info.Run {
		t.Errorf("PyRun_SimpleString at %#x (found %v), the target says %#x", got, ok, info.Run)
	}
	if !py.InText(info.Run) {
		t.Errorf("PyRun_SimpleString %#x not in text ranges %v", info.Run, py.Text)
	}
	lib, err := py.CLib()
	if err != nil {
		t.Fatal(err)
	}
	if lib.Munmap != info.Munmap {
		t.Errorf("munmap at %#x (libc %s), the target says %#x", lib.Munmap, lib.Path, info.Munmap)
	}
	if lib.Pthread != info.Pthread {
		t.Errorf("pthread_create, _detach, _attr_init, _attr_setstacksize at %#x, the target says %#x", lib.Pthread, info.Pthread)
	}
	if info.Runtime != 0 {
		if got, ok := py.Symbol("_PyRuntime"); !ok || got != info.Runtime {
			t.Errorf("_PyRuntime at %#x (found %v), the target says %#x", got, ok, info.Runtime)
		}
		if !py.InData(info.Runtime) {
			t.Errorf("_PyRuntime %#x not in data ranges %v", info.Runtime, py.Data)
		}
		if py.Version.AtLeast(3, 10) && !py.Runtime.Contains(info.Runtime) {
			t.Errorf("_PyRuntime %#x not in .PyRuntime %v", info.Runtime, py.Runtime)
		}
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }

// TestFindPythonEveryInterpreter: on every interpreter testenv finds (the
// sid root's 3.14, 3.14-pie, 3.15 and 3.15d, started in their root and in
// a mount namespace of their own, included), what Inspect finds agrees
// with what the target says about itself.
func TestFindPythonEveryInterpreter(t *testing.T) {
	testenv.ForEachParallel(t, func(t *testing.T, in testenv.Interp) {
		tg := pyproctest.Start(t, in.Command("-c", pyproctest.Fixture))
		pr, err := pyproc.Inspect(tg.PID())
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		checkPython(t, pr.Python, tg.Info, in.Shared)
		if pr.PID != tg.Info.PID || pr.NSPID != tg.Info.PID {
			t.Errorf("PID %d NSPID %d, want %d", pr.PID, pr.NSPID, tg.Info.PID)
		}
		if pr.User() != "root" && os.Geteuid() == 0 {
			t.Errorf("user %q (uid %d), want root", pr.User(), pr.UID)
		}
		if pr.UID != os.Getuid() {
			t.Errorf("uid %d, want %d", pr.UID, os.Getuid())
		}
		if len(pr.Cmdline) != 3 || pr.Cmdline[0] != in.Path || pr.Cmdline[1] != "-c" {
			t.Errorf("cmdline %q", pr.Cmdline)
		}
		if pr.Zombie || pr.Stopped || pr.TracerPID != 0 {
			t.Errorf("zombie %v stopped %v tracer %d", pr.Zombie, pr.Stopped, pr.TracerPID)
		}
		// A chroot interpreter runs in a mount namespace of its own.
		if pr.OtherMountNS != (in.Chroot != "") || pr.OtherPIDNS {
			t.Errorf("other mount ns %v, other pid ns %v; want %v and false", pr.OtherMountNS, pr.OtherPIDNS, in.Chroot != "")
		}
		if ths, err := pr.Threads(); err != nil || len(ths) == 0 || ths[0].TID != tg.Info.PID || ths[0].NSTID != tg.Info.PID {
			t.Errorf("threads %+v (%v)", ths, err)
		}
		// The shared library sits in the prefix's lib; a linked-in
		// interpreter is the executable, which pyglass may name as the
		// host sees it.
		want := []string{in.Path, in.HostPath()}
		if in.Shared {
			want = []string{filepath.Join(filepath.Dir(filepath.Dir(in.Path)), "lib")}
		}
		if !slices.ContainsFunc(want, func(w string) bool { return strings.HasPrefix(pr.Python.Path, w) }) {
			t.Errorf("interpreter path %s, want under %q", pr.Python.Path, want)
		}
	})
}

func TestRenamedCopyIsFound(t *testing.T) {
	in := pyproctest.System(t)
	dir := filepath.Join(t.TempDir(), "xyz")
	os.Mkdir(dir, 0o755)
	bin := filepath.Join(dir, "myserver")
	copyFile(t, in.Path, bin, 0o755)
	tg := pyproctest.Start(t, exec.Command(bin, "-c", pyproctest.Fixture))
	py, err := pyproc.FindPython(tg.PID())
	if err != nil {
		t.Fatalf("FindPython: %v", err)
	}
	checkPython(t, py, tg.Info, false)
	if py.Path != bin {
		t.Errorf("path %s, want %s", py.Path, bin)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// startBlocked starts cmd with a stdin pipe that is closed (and the
// process killed) at the end of the test.
func startBlocked(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitFor(t, func() bool {
		ms, err := procfs.New(cmd.Process.Pid).Maps()
		return err == nil && len(ms) > 0
	})
	return cmd.Process.Pid
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met within 5s")
}

func wantNotPython(t *testing.T, pid int) {
	t.Helper()
	py, err := pyproc.FindPython(pid)
	if !errors.Is(err, pyproc.ErrNotPython) {
		t.Fatalf("FindPython = %v, %v; want ErrNotPython", py, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message on several lines: %q", err)
	}
	pr, err := pyproc.Inspect(pid)
	if !errors.Is(err, pyproc.ErrNotPython) || pr == nil || pr.Python != nil {
		t.Fatalf("Inspect = %+v, %v; want facts and ErrNotPython", pr, err)
	}
	t.Logf("%v", err)
}

func TestBashIsNotPython(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	pid := startBlocked(t, exec.Command(bash, "-c", "read x"))
	// Wait until bash is past exec and has loaded its libraries.
	waitFor(t, func() bool {
		s, err := procfs.New(pid).Stat()
		return err == nil && s.State == 'S'
	})
	wantNotPython(t, pid)
}

func TestGoProgramIsNotPython(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	src := "package main\nimport \"os\"\nfunc main() { var b [1]byte; os.Stdin.Read(b[:]) }\n"
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\ngo 1.21\n"), 0o644)
	build := exec.Command(goBin, "build", "-o", "tiny", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	pid := startBlocked(t, exec.Command(filepath.Join(dir, "tiny")))
	wantNotPython(t, pid)
}

// TestPythonConfigIsNotPython runs python3-config, a shell script, and
// inspects it stopped at its exec (it would otherwise exit at once).
func TestPythonConfigIsNotPython(t *testing.T) {
	cfg, err := exec.LookPath("python3-config")
	if err != nil {
		t.Skip("no python3-config")
	}
	b, err := os.ReadFile(cfg)
	if err != nil || !strings.HasPrefix(string(b), "#!") {
		t.Skip("python3-config is not a script here")
	}
	cmd := exec.Command(cfg, "--prefix")
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true} // stops at exec with SIGTRAP
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	waitFor(t, func() bool {
		s, err := procfs.New(pid).Stat()
		return err == nil && procfs.IsStopped(s.State)
	})
	pr, err := pyproc.Inspect(pid)
	if !errors.Is(err, pyproc.ErrNotPython) {
		t.Fatalf("Inspect = %v; want ErrNotPython", err)
	}
	// The tracer is one of our threads.
	tracer, err := procfs.New(pr.TracerPID).Status()
	if !pr.Stopped || err != nil || tracer.Tgid != os.Getpid() {
		t.Errorf("stopped %v tracer %d; want stopped, traced by us (%d)", pr.Stopped, pr.TracerPID, os.Getpid())
	}
	if !slices.Contains(pr.Cmdline, cfg) {
		t.Errorf("cmdline %q does not name %s", pr.Cmdline, cfg)
	}
}

func TestZombie(t *testing.T) {
	in := pyproctest.System(t)
	cmd := exec.Command(in.Path, "-c", "pass")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Wait() })
	// Not reaped until the cleanup: it stays a zombie.
	waitFor(t, func() bool {
		s, err := procfs.New(pid).Stat()
		return err == nil && s.State == 'Z'
	})
	pr, err := pyproc.Inspect(pid)
	if !errors.Is(err, pyproc.ErrZombie) || pr == nil || !pr.Zombie {
		t.Fatalf("Inspect = %+v, %v; want a zombie", pr, err)
	}
	if _, err := pyproc.FindPython(pid); !errors.Is(err, pyproc.ErrZombie) {
		t.Fatalf("FindPython: %v; want ErrZombie", err)
	}
	if errs.HintOf(err) == "" {
		t.Errorf("no hint for %v", err)
	}
}

func TestNoSuchProcess(t *testing.T) {
	// Above the largest pid_max (2^22).
	for _, pid := range []int{1<<22 + 17, 0, -1} {
		if _, err := pyproc.Inspect(pid); !errors.Is(err, pyproc.ErrNoProcess) {
			t.Errorf("Inspect(%d): %v; want ErrNoProcess", pid, err)
		}
		if _, err := pyproc.FindPython(pid); !errors.Is(err, pyproc.ErrNoProcess) {
			t.Errorf("FindPython(%d): %v; want ErrNoProcess", pid, err)
		}
	}
}

// TestListFindsTargets: List (pyglass ps) finds the interpreters with
// libpython linked in (Debian's, the sid root's 3.14, 3.14-pie, 3.15 and
// 3.15d) and a shared one, as Inspect describes them.
func TestListFindsTargets(t *testing.T) {
	var want []int
	for _, in := range testenv.Interpreters() {
		if !in.Shared || in.Label == "3.12" {
			want = append(want, pyproctest.Start(t, in.Command("-c", pyproctest.Fixture)).PID())
		}
	}
	if len(want) == 0 {
		t.Skip("no Python interpreter on this machine")
	}
	start := time.Now()
	list, err := pyproc.List()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("List found %d Python processes in %v", len(list), time.Since(start))
	for _, pid := range want {
		i := slices.IndexFunc(list, func(s pyproc.Summary) bool { return s.PID == pid })
		if i < 0 {
			t.Errorf("List missed PID %d", pid)
			continue
		}
		s := list[i]
		pr, err := pyproc.Inspect(pid)
		if err != nil {
			t.Fatal(err)
		}
		if s.Version != pr.Python.Version || !s.VersionKnown || s.Shared != pr.Python.Shared || s.User != pr.User() || !slices.Equal(s.Cmdline, pr.Cmdline) {
			t.Errorf("summary %+v disagrees with Inspect %+v", s, pr)
		}
	}
	for _, s := range list {
		if s.PID == os.Getpid() {
			t.Errorf("List includes the test itself")
		}
	}
}

func TestOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as nobody")
	}
	in := pyproctest.System(t)
	cmd := exec.Command(in.Path, "-c", pyproctest.Fixture)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = "/"
	tg := pyproctest.Start(t, cmd)
	pr, err := pyproc.Inspect(tg.PID())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if pr.UID != 65534 || pr.EUID != 65534 {
		t.Errorf("uid %d euid %d, want 65534", pr.UID, pr.EUID)
	}
	if want := procfs.Self().UserName(65534); pr.User() != want || want == "65534" {
		t.Errorf("user %q, want %q (from /etc/passwd)", pr.User(), want)
	}
	checkPython(t, pr.Python, tg.Info, false)
}

// nsScript mounts a tmpfs on /tmp in a new mount namespace, copies the
// interpreter (and its libpython) there and runs the fixture from it:
// the files exist only inside the namespace.
const nsScript = `set -e
mount -t tmpfs pyglass /tmp
mkdir /tmp/ns
cp "$1" /tmp/ns/python
if [ -n "$2" ]; then cp "$2" /tmp/ns/; fi
export LD_LIBRARY_PATH=/tmp/ns
exec /tmp/ns/python -c "$0"
`

func TestOtherNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for unshare")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare")
	}
	for _, in := range []pyproctest.Interp{pyproctest.System(t), pyproctest.Pyenv(t, "3.12")} {
		t.Run(in.Name, func(t *testing.T) {
			lib := ""
			env := os.Environ()
			if in.Shared {
				libs, _ := filepath.Glob(filepath.Join(in.Home, "lib", "libpython*.so.1.0"))
				if len(libs) != 1 {
					t.Skipf("libpython of %s not found", in.Path)
				}
				lib = libs[0]
				env = append(env, "PYTHONHOME="+in.Home)
			}
			cmd := exec.Command(unshare, "--mount", "--pid", "--fork", "--propagation", "private",
				"sh", "-c", nsScript, pyproctest.Fixture, in.Path, lib)
			cmd.Env = env
			cmd.Dir = "/"
			tg := pyproctest.Start(t, cmd)
			if tg.Info.PID != 1 {
				t.Fatalf("fixture has PID %d in its namespace, want 1", tg.Info.PID)
			}
			pid := childOf(t, tg.PID())
			pr, err := pyproc.Inspect(pid)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if !pr.OtherMountNS || !pr.OtherPIDNS {
				t.Errorf("other mount ns %v, other pid ns %v; want both", pr.OtherMountNS, pr.OtherPIDNS)
			}
			if ths, err := pr.Threads(); err != nil || len(ths) == 0 || pr.NSPID != 1 || ths[0].NSTID != 1 || ths[0].TID != pid {
				t.Errorf("NSPID %d threads %+v (%v); want 1 inside, %d outside", pr.NSPID, ths, err, pid)
			}
			if pr.Exe != "/tmp/ns/python" {
				t.Errorf("exe %q", pr.Exe)
			}
			py := pr.Python
			if !strings.HasPrefix(py.Path, "/tmp/ns/") || !strings.HasPrefix(py.OpenedAs, "/proc/") {
				t.Errorf("interpreter %s opened as %s; want the namespace's file through /proc", py.Path, py.OpenedAs)
			}
			if _, err := os.Stat(py.Path); err == nil {
				t.Logf("note: %s also exists on the host", py.Path)
			}
			checkPython(t, py, tg.Info, in.Shared)
		})
	}
}

// childOf returns the only child of pid (the Python that unshare forked).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Skipf("cannot read children of %d: %v", pid, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("unshare %d has children %q", pid, f)
	}
	var c int
	fmt.Sscan(f[0], &c)
	return c
}
