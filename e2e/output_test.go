package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// runTo runs pyglass with its stdout on out (a file or a pipe) and stdin
// as its input, bounded by a minute, and returns how it ended and its stderr.
func runTo(t *testing.T, out *os.File, stdin string, args ...string) (*os.ProcessState, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.BuildPyglass(t), args...)
	var errb strings.Builder
	cmd.Stdout, cmd.Stderr = out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running pyglass %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("pyglass %v hung for a minute", args)
	}
	return cmd.ProcessState, errb.String()
}

// TestOutputFailures: every command that prints fails honestly when its
// output cannot be written. Into a pipe whose reader is gone ("| head -1")
// it ends quietly by the SIGPIPE convention; into a full disk (/dev/full)
// it exits 6 with one error line, never 0.
func TestOutputFailures(t *testing.T) {
	in := anyInterp(t, "3.12", "3.11-debian", "3.13")
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
	pid := strconv.Itoa(tg.PID)
	commands := [][]string{
		{"stacks", pid}, {"stacks", "--json", pid}, {"info", pid}, {"ps"}, {"gc", pid},
		{"objects", pid, "--top", "3"}, {"exec", pid, "-c", "print('x' * 100)"}, {"--version"},
	}
	shell := []string{"shell", pid}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		testenv.Skipf(t, "no /dev/full: %v", err)
	}
	defer full.Close()
	for _, args := range commands {
		st, stderr := runTo(t, full, "", args...)
		if st.ExitCode() != 6 || !strings.HasPrefix(stderr, "pyglass: cannot write the output:") || strings.Count(stderr, "\n") > 2 {
			t.Errorf("pyglass %v > /dev/full: %v, stderr %q; want exit 6 and one error line", args, st, stderr)
		}
	}
	// A scripted shell (stdin and stdout not terminals) too.
	st, stderr := runTo(t, full, "print(6 * 7)\n", shell...)
	if st.ExitCode() != 6 || !strings.HasPrefix(stderr, "pyglass: cannot write the output:") {
		t.Errorf("pyglass shell > /dev/full: %v, stderr %q; want exit 6 and one error line", st, stderr)
	}
	for _, args := range commands {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		st, stderr := runTo(t, w, "", args...)
		w.Close()
		ws, _ := st.Sys().(syscall.WaitStatus)
		quiet := (ws.Signaled() && ws.Signal() == syscall.SIGPIPE) || st.ExitCode() == 141
		if !quiet || stderr != "" {
			t.Errorf("pyglass %v | (closed): %v, stderr %q; want an end by SIGPIPE (or 141), nothing printed", args, st, stderr)
		}
	}
	healthy(t, tg)
	noTraces(t, tg)
}
