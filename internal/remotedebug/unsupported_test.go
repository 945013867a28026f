package remotedebug_test

import (
	"errors"
	"testing"

	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/internal/remotedebug"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

// TestOlderVersions checks that a 3.13 target (debug offsets without the
// debugger_support group) is refused without any write.
func TestOlderVersions(t *testing.T) {
	in, ok := testenv.Lookup("3.13")
	if !ok {
		testenv.Skipf(t, "no Python 3.13 interpreter")
	}
	tt := start(t, in, busyMain)
	mem, rt := tt.mem, tt.runtime
	if _, err := remotedebug.Enabled(mem, rt); !errors.Is(err, remotedebug.ErrUnsupported) {
		t.Errorf("Enabled on 3.13 = %v, want ErrUnsupported", err)
	}
	if err := remotedebug.Request(mem, rt, 0x1000, "/tmp/x.py"); !errors.Is(err, remotedebug.ErrUnsupported) {
		t.Errorf("Request on 3.13 = %v, want ErrUnsupported", err)
	}
	if _, err := remotedebug.PickThread(mem, tt.tg.PID, rt); !errors.Is(err, remotedebug.ErrUnsupported) {
		t.Errorf("PickThread on 3.13 = %v, want ErrUnsupported", err)
	}
	healthy(t, tt)
}

// TestWriteFault checks that, through the reader and writer the requests
// use (live.Process), an unmapped address gives memory.ErrFault both
// ways, and that read-only code cannot be written (the bytes
// written are the ones already there, so a failure of the test would
// still leave the target intact).
func TestWriteFault(t *testing.T) {
	forEach314(t, func(t *testing.T, in testenv.Interp) {
		tt := start(t, in, busyMain)
		var b [8]byte
		if _, err := tt.mem.ReadAt(b[:], 0x1000); !errors.Is(err, memory.ErrFault) {
			t.Errorf("read at 0x1000: %v, want ErrFault", err)
		}
		if _, err := tt.mem.WriteAt(b[:], 0x1000); !errors.Is(err, memory.ErrFault) {
			t.Errorf("write at 0x1000: %v, want ErrFault", err)
		}
		img, err := layouttest.FindImage(tt.tg.PID)
		if err != nil {
			t.Fatal(err)
		}
		text := img.Sections[".text"][0]
		if _, err := tt.mem.ReadAt(b[:], text); err != nil {
			t.Fatalf("reading .text: %v", err)
		}
		if _, err := tt.mem.WriteAt(b[:], text); !errors.Is(err, memory.ErrFault) {
			t.Errorf("write into .text: %v, want ErrFault", err)
		}
		healthy(t, tt)
	})
}
