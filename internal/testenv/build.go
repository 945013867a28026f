package testenv

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot returns the directory of the pyglass module (the nearest parent
// of the working directory holding go.mod), failing the test if none.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for i := 0; i < 64; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("finding the module root: no go.mod above the working directory")
}

// Fixture returns the contents of testdata/NAME at the module root (e.g.
// "sleeper.py"), ready to pass to Start.
func Fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(RepoRoot(t), "testdata", name))
	if err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	return string(b)
}

var (
	buildMu   sync.Mutex
	buildDir  string
	buildPath string
	buildErr  error
	buildDone bool
)

// BuildPyglass builds ./cmd/pyglass once per test binary (into a temporary
// directory readable by every user, removed by Main) and returns the
// binary's path. It skips the test when cmd/pyglass does not exist yet and
// fails it when the build fails.
func BuildPyglass(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "cmd", "pyglass")); err != nil {
		Skipf(t, "cmd/pyglass does not exist yet")
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if !buildDone {
		buildDone = true
		buildPath, buildErr = build(root)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func build(root string) (string, error) {
	dir, err := os.MkdirTemp("", "pyglass-bin-")
	if err != nil {
		return "", fmt.Errorf("creating build directory: %w", err)
	}
	buildDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("making build directory readable: %w", err)
	}
	out := filepath.Join(dir, "pyglass")
	cmd := exec.Command(GoTool(), "build", "-o", out, "./cmd/pyglass")
	cmd.Dir = root
	// As the README builds it: static, no C library.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cmd/pyglass: %v\n%s", err, b)
	}
	return out, nil
}

// GoTool is the go command the tests build with: the one on PATH, else
// the one of the toolchain that built the test.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func cleanupBuild() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// LoadPerCPU is the 1-minute load average divided by the CPU count: above
// 1, wall-clock stall measurements include CPU contention that is not the
// code under test's.
func LoadPerCPU() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l / float64(runtime.NumCPU())
}

// ExampleTarget starts a Python program for a runnable example: code runs
// on the newest interpreter found outside a chroot (python3 if none) and
// must print "up" once it is ready; ExampleTarget returns then. stop kills
// and reaps it.
func ExampleTarget(code string) (pid int, stop func(), err error) {
	py, best := "python3", Interp{}
	for _, in := range Interpreters() {
		if in.Chroot == "" && in.AtLeast(best.Major, best.Minor+1) {
			py, best = in.Path, in
		}
	}
	cmd := exec.Command(py, "-c", code)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	if _, err := io.ReadFull(out, make([]byte, 2)); err != nil {
		stop()
		return 0, nil, fmt.Errorf("%s did not start: %w", py, err)
	}
	return cmd.Process.Pid, stop, nil
}

// StallBound is the longest stall of a target's heartbeat thread that a
// test accepts from pyglass's work in the target, given base: the longest
// stall, over the same time, of the heartbeat of another process where a
// thread shares the GIL the way pyglass promises to (computes 2 ms, sleeps
// 0.1 ms). base measures what is not pyglass's, under the same load: the
// CPU contention on the machine and the GIL's handoff under it. The bound
// is the 50 ms pyglass promises plus three times base, so it grows with the
// machine's load and still catches a GIL held too long. The factor is
// measured: at a load of 8 to 9 runnable threads per CPU, Python 2.7's
// census (whose heap walk also waits on memory) stalled its heartbeat up
// to 2.07 times as long as the reference process's sharing thread did.
func StallBound(base time.Duration) time.Duration {
	return 50*time.Millisecond + 3*base
}

// MarkedLine is the number (from 1) of the line of a fixture's source
// src that ends with the comment "# mark"; it fails the test when none
// does.
func MarkedLine(t testing.TB, src, mark string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.HasSuffix(l, "# "+mark) {
			return i + 1
		}
	}
	t.Fatalf("no line of the fixture ends with # %s", mark)
	return 0
}
