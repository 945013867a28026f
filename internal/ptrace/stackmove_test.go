package ptrace

import (
	"os/exec"
	"runtime"
	"testing"
	"time"
)

// deepen calls f with about n*64 bytes more of the goroutine's stack in
// use, so that some call inside f starts where the stack must grow.
//
//go:noinline
func deepen(n int, f func()) {
	var pad [48]byte
	if n > 0 {
		deepen(n-1, f)
		pad[n%len(pad)]++
		return
	}
	f()
}

// TestRegsWhileStackMoves reads and writes a stopped thread's registers
// at every stack depth up to 32 KiB, the tracer goroutine's stack shrunk
// before each, so that the stack grows, and so moves, inside the calls.
// A call that hands the kernel the address of a stack variable as a
// plain integer reads or fills the old copy; the registers read then
// come back zero (cs 0), and the ones written are not the ones passed.
// Last, registers no user thread can have (all zero) are refused without
// any of them written: the kernel alone would set rip and the others
// before cs, then fail.
func TestRegsWhileStackMoves(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1) to trace: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tr := NewTracer()
	defer tr.Close()
	var ref Regs
	if err := tr.Do(func() error {
		if err := Seize(pid, 0); err != nil {
			return err
		}
		if err := Interrupt(pid); err != nil {
			return err
		}
		if _, err := WaitUntil(pid, time.Now().Add(5*time.Second), nil); err != nil {
			return err
		}
		var err error
		ref, err = GetRegs(pid)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tr.Do(func() error { return Detach(pid, 0) })
	bad := 0
	for depth := 0; depth < 512 && bad < 5; depth++ {
		// Only the tracer's goroutine may issue the requests, and its
		// stack has grown by now: two collections shrink it again.
		runtime.GC()
		runtime.GC()
		err := tr.Do(func() error {
			var got Regs
			var gerr, serr error
			var st *State
			deepen(depth, func() {
				got, gerr = GetRegs(pid)
				if gerr == nil {
					serr = SetRegs(pid, ref)
				}
				if serr == nil {
					st, gerr = GetState(pid)
				}
				if gerr == nil && serr == nil {
					serr = SetState(pid, st)
				}
			})
			if gerr != nil || serr != nil {
				t.Errorf("depth %d: read %v, write %v", depth, gerr, serr)
				bad++
				return nil
			}
			if got != ref || st.Regs != ref {
				t.Errorf("depth %d: registers read differ from the stopped thread's: %s", depth, regsEIO(&got))
				bad++
			}
			again, err := GetRegs(pid)
			if err == nil && again != ref {
				t.Errorf("depth %d: registers written are not the ones passed: %s", depth, regsEIO(&again))
				bad++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Do(func() error {
		if err := SetRegs(pid, Regs{}); err == nil {
			t.Errorf("all-zero registers were written")
		}
		got, err := GetRegs(pid)
		if err != nil {
			return err
		}
		if got != ref {
			t.Errorf("a refused write changed the thread's registers (pc %#x, was %#x)", got.PC(), ref.PC())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
