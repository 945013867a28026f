package inject

import (
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

func TestStackRoomOf(t *testing.T) {
	maps := []procfs.Mapping{
		{Start: 0x1000, End: 0x2000},                      // a guard page
		{Start: 0x2000, End: 0x42000},                     // a thread's stack
		{Start: 0x7ff000, End: 0x800000, Path: "[stack]"}, // the main thread's
	}
	for _, c := range []struct {
		sp    uint64
		room  uint64
		known bool
	}{
		{0x41000, 0x3f000, true},
		{0x2100, 0x100, true},
		{0x7ff100, 0, false}, // grows on demand
		{0x900000, 0, false}, // a stack mapped since
	} {
		if room, known := stackRoom(maps, c.sp); room != c.room || known != c.known {
			t.Errorf("stackRoom(%#x) = %#x, %v; want %#x, %v", c.sp, room, known, c.room, c.known)
		}
	}
}

// TestSmallStackNotBorrowed: a thread blocked in sleep is the first
// candidate (the main thread runs C code); with less stack below its
// stack pointer than the chain may need it must not be borrowed (the
// test raises the need above the thread's 256 KiB stack), and the code
// runs on the main thread instead. With the real need it is borrowed.
func TestSmallStackNotBorrowed(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := startTarget(t, in, "smallstack")
		var small int
		testenv.WaitUntil(t, 10*time.Second, "the small-stack thread blocks in sleep", func() bool {
			tids, _ := procfs.New(tg.pid).TaskIDs()
			for _, tid := range tids {
				if st, err := taskState(tg.pid, tid); tid != tg.pid && err == nil && st == 'S' {
					small = tid
				}
			}
			return small != 0
		})
		opt := Options{AvoidEINTR: in.Major == 2, Timeout: 20 * time.Second}
		res := injectMarker(t, tg, opt)
		if res.Thread != small {
			t.Fatalf("with the real need, borrowed thread %d, not the small-stack thread %d (%s): the fixture does not make it the first choice, and the check below would prove nothing", res.Thread, small, res.Why)
		}
		defer func(old uint64) { minStackRoom = old }(minStackRoom)
		minStackRoom = 1 << 20
		res = injectMarker(t, tg, opt)
		if res.Thread == small {
			t.Fatalf("borrowed thread %d, whose stack has less room than the %d KiB needed: %s", small, minStackRoom>>10, res.Why)
		}
		tg.checkHealthy()
	})
}
