package ptrace

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3.11", filepath.Join(os.Getenv("HOME"), ".pyenv/versions/3.12.1/bin/python3")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no python3 found for a multi-threaded target")
	return ""
}

// startThreads runs a Python process with 4 threads sleeping in a loop
// and a SIGUSR1 handler that prints a line.
func startThreads(t *testing.T) (*exec.Cmd, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python(t), "-c", `
import threading, time, signal, sys
signal.signal(signal.SIGUSR1, lambda *a: (sys.stdout.write("usr1\n"), sys.stdout.flush()))
for _ in range(3):
    t = threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(int, 1)])
    t.daemon = True
    t.start()
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    time.sleep(0.01)
`)
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		// A thread left traced by a tracer thread that no longer waits
		// for it keeps the killed process from being reaped: fail, do not
		// hang.
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("target %d could not be reaped after SIGKILL: a thread is still traced", cmd.Process.Pid)
		}
		r.Close()
	})
	buf := make([]byte, 6)
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("target not ready: %q %v", buf, err)
	}
	return cmd, r
}

func states(t *testing.T, pid int) map[int]byte {
	t.Helper()
	tids, err := Tasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]byte{}
	for _, tid := range tids {
		st, err := TaskState(pid, tid)
		if err == nil {
			out[tid] = st
		}
	}
	return out
}

func TestFreezeThaw(t *testing.T) {
	cmd, _ := startThreads(t)
	pid := cmd.Process.Pid
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		f, err := Freeze(pid)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		if len(f.Tids) != 4 {
			t.Errorf("froze %d threads, want 4", len(f.Tids))
		}
		for tid, st := range states(t, pid) {
			if st != 't' {
				t.Errorf("thread %d in state %c while frozen", tid, st)
			}
		}
		// Memory reads work while frozen.
		var b [4]byte
		if _, err := NewMem(pid).ReadAt(b[:], 0x400000); err != nil && i == 0 {
			t.Logf("read at 0x400000: %v (fine for a PIE)", err)
		}
		if err := f.Thaw(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("froze %d threads in %v", len(f.Tids), took)
		}
		for tid, st := range states(t, pid) {
			if st == 't' || st == 'T' {
				t.Errorf("thread %d in state %c after thaw", tid, st)
			}
		}
		if tp, _ := TracerPid(pid); tp != 0 {
			t.Errorf("TracerPid %d after thaw", tp)
		}
	}
}

func TestFreezeKeepsGroupStop(t *testing.T) {
	cmd, _ := startThreads(t)
	pid := cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		all := true
		for _, st := range states(t, pid) {
			all = all && st == 'T'
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("target never stopped")
		}
		time.Sleep(2 * time.Millisecond)
	}
	f, err := Freeze(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	for tid, st := range states(t, pid) {
		if st != 'T' {
			t.Errorf("thread %d in state %c after Freeze/Thaw of a stopped process, want T", tid, st)
		}
	}
	syscall.Kill(pid, syscall.SIGCONT)
	time.Sleep(50 * time.Millisecond)
	for tid, st := range states(t, pid) {
		if st == 'T' || st == 't' {
			t.Errorf("thread %d still stopped after SIGCONT", tid)
		}
	}
}

// TestSignalWhileFrozen: a signal sent while the process is frozen is
// delivered after Thaw.
func TestSignalWhileFrozen(t *testing.T) {
	cmd, r := startThreads(t)
	pid := cmd.Process.Pid
	f, err := Freeze(pid)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGUSR1)
	time.Sleep(20 * time.Millisecond)
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Read(buf); err != nil || string(buf) != "usr1\n" {
		t.Fatalf("SIGUSR1 not delivered after thaw: %q %v", buf, err)
	}
}

func TestFreezeGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1)")
	}
	if _, err := Freeze(cmd.Process.Pid); err == nil {
		t.Fatal("Freeze of an exited process succeeded")
	}
}

// TestThawBeforeStopped: a Freeze that gives up early (a thread refused,
// say) thaws threads it interrupted that have not reached their stop yet.
// PTRACE_DETACH refuses a thread that is not in a ptrace stop; Thaw must
// wait for the stop and detach it then, not leave it traced (and stopped,
// once its interrupt arrives) by a tracer thread that has moved on.
func TestThawBeforeStopped(t *testing.T) {
	cmd, _ := startThreads(t)
	pid := cmd.Process.Pid
	for i := 0; i < 50; i++ {
		tids, err := Tasks(pid)
		if err != nil {
			t.Fatal(err)
		}
		f := &Frozen{Pid: pid, t: NewTracer(), sigs: map[int]syscall.Signal{}}
		err = f.t.Do(func() error {
			for _, tid := range tids {
				if err := Seize(tid, 0); err != nil {
					return err
				}
				f.Tids = append(f.Tids, tid)
				if err := Interrupt(tid); err != nil {
					return err
				}
			}
			return nil
		})
		if terr := f.Thaw(); terr != nil {
			t.Fatalf("thaw: %v", terr)
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		for tid, st := range states(t, pid) {
			if st == 't' || st == 'T' {
				t.Fatalf("round %d: thread %d in state %c after thaw", i, tid, st)
			}
			if tp, _ := StatusField(pid, tid, "TracerPid"); tp != "0" {
				t.Fatalf("round %d: thread %d still traced by %s", i, tid, tp)
			}
		}
	}
}
