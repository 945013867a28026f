// Package e2e tests the pyglass command as a user runs it: the real binary
// against real Python processes of every interpreter present, with real
// ptrace and real files. Nothing of the kernel or of CPython is mocked.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

func TestMain(m *testing.M) {
	if pid := os.Getenv("PYGLASS_E2E_STACKS_LOOP"); pid != "" {
		os.Exit(stacksLoop(pid))
	}
	testenv.Main(m)
}

// stacksLoop is run in a copy of the test binary: a library user that is
// not the target's parent reads the target's stacks in a tight loop until
// it is gone. Exit 0 when every error was "exited"/"not Python", 1
// otherwise; it prints the outcome counts.
func stacksLoop(pidText string) int {
	pid, _ := strconv.Atoi(pidText)
	p, err := pyglass.Attach(pid)
	if err != nil {
		fmt.Println("attach:", err)
		return 1
	}
	ok, gone := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, err := p.Stacks(context.Background(), pyglass.StackOptions{})
		switch {
		case err == nil:
			ok++
		case errors.Is(err, pyglass.ErrNoProcess) || errors.Is(err, pyglass.ErrNotPython):
			gone++
			if _, serr := os.Stat(fmt.Sprintf("/proc/%d/status", pid)); serr != nil || state(pid) == 'Z' {
				fmt.Printf("dumps %d, then gone\n", ok)
				return 0
			}
		default:
			fmt.Printf("dump %d: %v (%T)\n", ok, err, err)
			return 1
		}
	}
	fmt.Printf("dumps %d, errors %d, still there after 10 s\n", ok, gone)
	return 1
}

// result is one run of the pyglass binary.
type result struct {
	Stdout, Stderr string
	Code           int
	Took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout: %q\nstderr: %q", r.Code, r.Took, clip(r.Stdout), clip(r.Stderr))
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + " ... " + s[len(s)-1000:]
	}
	return s
}

// run runs pyglass with args (and stdin), bounded by a minute.
func run(t testing.TB, stdin []byte, args ...string) result {
	t.Helper()
	return runWithin(t, time.Minute, stdin, args...)
}

// runWithin is run bounded by limit.
func runWithin(t testing.TB, limit time.Duration, stdin []byte, args ...string) result {
	t.Helper()
	return runBin(t, testenv.BuildPyglass(t), "", limit, stdin, args...)
}

// runBin runs the pyglass binary bin in dir (the test's when "").
func runBin(t testing.TB, bin, dir string, limit time.Duration, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// A run that hangs is asked for its goroutines (Go's runtime prints
	// them on SIGQUIT) before it is killed: where it waited is the
	// failure's first clue.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	t0 := time.Now()
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String(), Took: time.Since(t0)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("running pyglass %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Logf("pyglass %v hung: its whole stderr, with its goroutines:\n%s", args, r.Stderr)
		t.Fatalf("pyglass %v hung for %v: %s", args, limit, r)
	}
	return r
}

// want fails unless r exited with code.
func want(t testing.TB, r result, code int) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
}

// oneLineErr fails unless stderr is one error line (plus at most a hint).
func oneLineErr(t testing.TB, r result, substr string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	if len(lines) == 0 || len(lines) > 2 || !strings.HasPrefix(lines[0], "pyglass") ||
		(len(lines) == 2 && !strings.HasPrefix(lines[1], "hint: ") && !strings.HasPrefix(lines[1], "Usage:") && !strings.HasPrefix(lines[1], "Run ")) {
		t.Fatalf("want a one-line error, got %q", r.Stderr)
	}
	if !strings.Contains(strings.ToLower(r.Stderr), strings.ToLower(substr)) {
		t.Fatalf("want the error to mention %q, got %q", substr, r.Stderr)
	}
}

func healthy(t testing.TB, tg *testenv.Target) {
	t.Helper()
	if err := tg.Healthy(); err != nil {
		t.Fatal(err)
	}
}

// noTraces fails if the target printed anything that says one of its
// system calls was disturbed.
func noTraces(t testing.TB, tg *testenv.Target) {
	t.Helper()
	for _, l := range tg.Stdout() {
		if strings.HasPrefix(l, "SHORT") || strings.HasPrefix(l, "EXCEPTION") {
			t.Fatalf("the target noticed pyglass: %q", l)
		}
	}
	if s := tg.Stderr(); strings.TrimSpace(s) != "" {
		t.Fatalf("the target wrote to its stderr: %q", s)
	}
}

// channelDir is the name of a channel directory (internal/channel).
var channelDir = regexp.MustCompile(`^pyglass-[0-9a-f]{24}$`)

// pyglassDirs lists the channel directories in dir as the target sees it.
func pyglassDirs(t testing.TB, pid int, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/root%s", pid, dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if channelDir.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// forLabels runs fn as a subtest for each named interpreter; one that is
// absent is a skipped subtest with the reason (never a silent pass).
func forLabels(t *testing.T, labels []string, fn func(t *testing.T, in testenv.Interp)) {
	t.Helper()
	for _, label := range labels {
		t.Run(label, func(t *testing.T) {
			in, ok := testenv.Lookup(label)
			if !ok {
				testenv.Skipf(t, "interpreter %s is absent on this machine", label)
			}
			fn(t, in)
		})
	}
}
