package inject

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestSelfRestoreKeepsFPState: a thread borrowed at an arbitrary
// instruction may hold live values in its vector registers (gcc keeps
// pointers and doubles there); the C calls of the chain clobber them. The
// tracer restores them from its copy, and so must the thread when it
// restores itself. The same holds for flags the chain must clear for its
// C calls (amd64's direction flag). The test marks every vector register
// (and sets those flags) of a thread blocked in accept, lets an abandoned
// injection run, waits until the thread is back in the same accept (no
// user code ran in between), compares, and puts the flags back.
func TestSelfRestoreKeepsFPState(t *testing.T) {
	testHookAbandon = func(_ int, step string) bool { return step == "chain" }
	t.Cleanup(func() { testHookAbandon = nil })
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "accept")
		syms := resolve(t, tg.pid)
		before, err := procfs.New(tg.pid).TaskSyscall(tg.pid)
		if err != nil {
			t.Fatal(err)
		}
		marked := withStoppedThread(t, tg.pid, func(s *ptrace.State) bool {
			markVectorRegs(s.FP)
			markFlags(&s.Regs, true)
			return true
		})
		path, inside := tg.marker()
		if _, err := StartThread(tg.pid, syms, []byte(markerSrc(inside)), Options{AvoidEINTR: in.Major == 2}); err != nil {
			t.Fatal(err)
		}
		waitFile(t, path, 10*time.Second)
		testenv.WaitUntil(t, 10*time.Second, "the thread restores itself and blocks in accept again", func() bool {
			now, err := procfs.New(tg.pid).TaskSyscall(tg.pid)
			return err == nil && !now.Running && now.Nr == before.Nr && now.PC == before.PC && now.SP == before.SP
		})
		flagsKept := true
		after := withStoppedThread(t, tg.pid, func(s *ptrace.State) bool {
			flagsKept = flagsMarked(&s.Regs)
			markFlags(&s.Regs, false) // what the thread's own code expects again
			return true
		})
		if d := fpDiff(marked, after); d != "" {
			t.Errorf("vector registers changed by a self-restored injection: %s", d)
		}
		if !flagsKept {
			t.Errorf("flags changed by a self-restored injection")
		}
		checkReleased(t, tg.pid)
		tg.progresses()
	})
}

// withStoppedThread seizes and interrupts the thread tid == pid, calls f
// with its registers (writing them back when f returns true), and lets it
// go; it returns the FP image the thread runs on afterwards.
func withStoppedThread(t *testing.T, pid int, f func(*ptrace.State) bool) []byte {
	t.Helper()
	tr := ptrace.NewTracer()
	defer tr.Close()
	var fp []byte
	err := tr.Do(func() error {
		if err := ptrace.Seize(pid, 0); err != nil {
			return err
		}
		defer ptrace.Detach(pid, 0)
		if err := ptrace.Interrupt(pid); err != nil {
			return err
		}
		if st, err := ptrace.WaitUntil(pid, time.Now().Add(10*time.Second), nil); err != nil || st.Kind == ptrace.StopExited {
			return fmt.Errorf("stopping %d: %v %v", pid, st, err)
		}
		s, err := ptrace.GetState(pid)
		if err != nil {
			return err
		}
		if f(s) {
			if err := ptrace.SetState(pid, s); err != nil {
				return err
			}
			if s, err = ptrace.GetState(pid); err != nil {
				return err
			}
		}
		fp = s.FP
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func fpDiff(a, b []byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("image size %d, then %d", len(a), len(b))
	}
	for _, r := range vectorRanges(len(a)) {
		if !bytes.Equal(a[r[0]:r[1]], b[r[0]:r[1]]) {
			for i := r[0]; i < r[1]; i++ {
				if a[i] != b[i] {
					return fmt.Sprintf("first difference at byte %d of the FP image (%#x, then %#x)", i, a[i], b[i])
				}
			}
		}
	}
	return ""
}
