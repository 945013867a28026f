package ptrace

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/target"
)

// TestInspect: a held thread blocked in read(fd) is reported in that
// system call with fd as its first argument, a thread spinning in Python
// in none; each thread pointer is the thread's pthread_t (what
// threading.get_ident returns); a process the user stopped is reported
// stopped.
func TestInspect(t *testing.T) {
	cmd := exec.Command(inspectPython(t), "-c", `
import os, sys, threading
r, w = os.pipe()
ready = threading.Event()
info = []
def spin():
    info.append((threading.get_ident(), threading.get_native_id()))
    ready.set()
    while True:
        pass
t = threading.Thread(target=spin)
t.daemon = True
t.start()
ready.wait()
sys.stdout.write("%d %d %d %d\n" % (r, threading.get_ident(), info[0][0], info[0][1]))
sys.stdout.flush()
os.read(r, 1)
`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var fd, mainIdent, spinIdent uint64
	var spinTID int
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscan(line, &fd, &mainIdent, &spinIdent, &spinTID); err != nil || serr != nil {
		t.Fatalf("target's line %q: %v %v", line, err, serr)
	}
	pid := cmd.Process.Pid
	// Into read(): waited for, not slept for (50 ms was not enough under
	// load in CI). Before every round: the read a pause interrupted is
	// restarted after the thaw, once the thread runs again, which on a
	// loaded machine may be after the next round's pause.
	inRead := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			sc, err := procfs.New(pid).TaskSyscall(pid)
			if err == nil && sc.InSyscall && sc.Nr == unix.SYS_READ {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the target's main thread is not in read() after 20 s (%+v, %v)", sc, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for round := 0; round < 5; round++ {
		inRead()
		f, err := Freeze(pid)
		if err != nil {
			t.Fatal(err)
		}
		held := f.Inspect()
		f.Thaw()
		m, s := held[pid], held[spinTID]
		if m.Syscall != unix.SYS_READ || m.Args[0] != fd || m.Stopped {
			t.Errorf("main thread %+v, want blocked in read(%d)", m, fd)
		}
		if s.Syscall != -1 || s.Stopped {
			t.Errorf("spinning thread %+v, want running", s)
		}
		machine := elf.EM_X86_64
		if runtime.GOARCH == "arm64" {
			machine = elf.EM_AARCH64
		}
		if _, ok := target.PthreadDistance(machine, m.TP, mainIdent); !ok {
			t.Errorf("main thread's pointer %#x is not its pthread_t %#x", m.TP, mainIdent)
		}
		if _, ok := target.PthreadDistance(machine, s.TP, spinIdent); !ok {
			t.Errorf("spinning thread's pointer %#x is not its pthread_t %#x", s.TP, spinIdent)
		}
	}
	syscall.Kill(pid, syscall.SIGSTOP)
	defer syscall.Kill(pid, syscall.SIGCONT)
	for i := 0; ; i++ {
		if st, err := procfs.New(pid).TaskStat(spinTID); err == nil && st.State == 'T' {
			break
		}
		if i == 500 {
			t.Fatalf("target never stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := Freeze(pid)
	if err != nil {
		t.Fatal(err)
	}
	held := f.Inspect()
	f.Thaw()
	for _, tid := range []int{pid, spinTID} {
		if !held[tid].Stopped {
			t.Errorf("thread %d of a stopped process: %+v, want stopped", tid, held[tid])
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		t.Fatal(err)
	}
}

// inspectPython returns a host interpreter with threading.get_native_id
// (3.8+) for TestInspect.
func inspectPython(t *testing.T) string {
	t.Helper()
	for _, in := range testenv.Interpreters() {
		if in.Chroot == "" && in.AtLeast(3, 8) {
			return in.Path
		}
	}
	testenv.Skipf(t, "no Python 3.8 or newer outside a chroot")
	return ""
}
