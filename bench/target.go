package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

// Fixture is a kind of benchmark target.
type Fixture string

// The fixtures.
const (
	// Idle is testdata/heartbeat.py: a heartbeat thread and a main thread
	// blocked reading stdin.
	Idle Fixture = ""
	// Heap is testdata/heap_heartbeat.py: the same, in front of a heap of
	// HeapObjects small objects (instances with a __dict__, lists, dicts,
	// strings).
	Heap Fixture = "heap"
	// Profile is testdata/profile_target.py: a hot thread spending 70 %
	// of its time in a() and 30 % in b(), 25 frames deep, and 9 idle
	// threads; a line on stdin makes it print its work done so far.
	Profile Fixture = "profile"
	// Tasks is testdata/tasks_heartbeat.py: the heartbeat, and a thread
	// running an asyncio loop with AsyncTasks tasks (gathers of ten
	// tasks sleeping two coroutines deep).
	Tasks Fixture = "tasks"
	// Leak is the Heap fixture with a leak: its main thread adds
	// LeakPerSecond small dicts per second to a global list, on one line
	// (a "commands" thread reads stdin).
	Leak Fixture = "leak"
	// Flip is testdata/stacks_flip.py: a thread running Python code 2 ms
	// and sleeping 2 ms in turn, measuring its split; a line on stdin
	// makes it print the split so far.
	Flip Fixture = "flip"
)

// LeakPerSecond is how fast the Leak fixture grows.
const LeakPerSecond = 5000

// AsyncTasks is how many tasks the Tasks fixture runs.
const AsyncTasks = 1000

// HeapObjects is the size of the Heap fixture's heap.
const HeapObjects = 1000000

// Target is a benchmark target: testdata/heartbeat.py (alone or behind a
// heap), whose heartbeat thread records its longest stall.
type Target struct {
	PID     int
	Interp  testenv.Interp
	Fixture Fixture
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string
	script  string // host path, removed by Stop
	stderr  *os.File
}

// StartTarget runs the fixture's script (copied from the module's
// testdata) with in and waits for its READY line.
func StartTarget(root string, in testenv.Interp, fix Fixture) (*Target, error) {
	files := []string{"heartbeat.py"}
	main, args, ready := "heartbeat.py", []string(nil), 30*time.Second
	if fix == Profile {
		files, main = []string{"profile_target.py"}, "profile_target.py"
	}
	if fix == Flip {
		files, main = []string{"stacks_flip.py"}, "stacks_flip.py"
	}
	if fix == Tasks {
		files = append(files, "tasks_heartbeat.py")
		main, args = "tasks_heartbeat.py", []string{fmt.Sprintf("tasks=%d", AsyncTasks)}
	}
	if fix == Heap || fix == Leak {
		files = append(files, "heap_heartbeat.py")
		main, args, ready = "heap_heartbeat.py", []string{fmt.Sprintf("objects=%d", HeapObjects)}, 3*time.Minute
		if fix == Leak {
			args = append(args, fmt.Sprintf("grow=%d", LeakPerSecond))
		}
	}
	dir, err := os.MkdirTemp(filepath.Join(in.Chroot, "/tmp"), "pyglass-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating script directory: %w", err)
	}
	os.Chmod(dir, 0o755)
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(root, "testdata", f))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f), src, 0o644)
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("copying %s: %w", f, err)
		}
	}
	host := filepath.Join(dir, main)
	inPath := "/" + strings.TrimPrefix(strings.TrimPrefix(host, in.Chroot), "/")
	errf, err := os.CreateTemp("", "pyglass-bench-stderr-")
	if err != nil {
		return nil, fmt.Errorf("creating stderr file: %w", err)
	}
	cmd := in.Command(append([]string{"-u", inPath}, args...)...)
	cmd.Dir = "/"
	cmd.Stderr = errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	tg := &Target{Interp: in, Fixture: fix, cmd: cmd, script: dir, stderr: errf, lines: make(chan string, 1024)}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if tg.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", in.Label, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case tg.lines <- sc.Text():
			default: // nobody reads: drop
			}
		}
		close(tg.lines)
	}()
	l, err := tg.wait("READY", ready)
	if err != nil {
		tg.Stop()
		return nil, err
	}
	// The interpreter's PID is the command's: every wrapper execs.
	tg.PID = cmd.Process.Pid
	_ = l
	return tg, nil
}

func (tg *Target) wait(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-tg.lines:
			if !ok {
				return "", fmt.Errorf("target exited; stderr: %s", tg.stderrTail())
			}
			if strings.HasPrefix(l, "EXCEPTION") {
				fmt.Fprintf(os.Stderr, "bench: target %s printed %q\n", tg.Interp.Label, l)
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-deadline:
			return "", fmt.Errorf("target did not answer %q within %v", prefix, timeout)
		}
	}
}

func (tg *Target) stderrTail() string {
	b, _ := os.ReadFile(tg.stderr.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Reset clears the heartbeat's stall record.
func (tg *Target) Reset() error {
	if _, err := io.WriteString(tg.stdin, "reset\n"); err != nil {
		return fmt.Errorf("sending reset: %w", err)
	}
	_, err := tg.wait("RESET", 10*time.Second)
	return err
}

// Stall returns the heartbeat's longest stall since the last Reset.
func (tg *Target) Stall() (time.Duration, error) {
	if _, err := io.WriteString(tg.stdin, "stall\n"); err != nil {
		return 0, fmt.Errorf("sending stall: %w", err)
	}
	l, err := tg.wait("STALL", 10*time.Second)
	if err != nil {
		return 0, err
	}
	var ms float64
	var beats int
	if _, err := fmt.Sscanf(l, "STALL max_ms=%g beats=%d", &ms, &beats); err != nil {
		return 0, fmt.Errorf("parsing %q: %w", l, err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// Healthy returns an error when a thread of the target is stopped or
// traced, or the target is gone.
func (tg *Target) Healthy() error {
	p := procfs.New(tg.PID)
	tids, err := p.TaskIDs()
	if err != nil {
		return fmt.Errorf("target gone: %w", err)
	}
	for _, tid := range tids {
		st, err := p.TaskStatus(tid)
		if err != nil {
			continue
		}
		if procfs.IsStopped(st.State) || st.State == 'Z' {
			return fmt.Errorf("thread %d left in state %c", tid, st.State)
		}
		if st.TracerPid != 0 {
			return fmt.Errorf("thread %d left traced by %d", tid, st.TracerPid)
		}
	}
	return nil
}

// Stop kills the target and removes its files.
func (tg *Target) Stop() {
	if tg.cmd.Process != nil {
		syscall.Kill(-tg.cmd.Process.Pid, syscall.SIGKILL)
		tg.cmd.Wait()
	}
	os.RemoveAll(tg.script)
	if c, ok := benchCores[tg.PID]; ok {
		os.Remove(c)
		delete(benchCores, tg.PID)
	}
	tg.stderr.Close()
	os.Remove(tg.stderr.Name())
}
