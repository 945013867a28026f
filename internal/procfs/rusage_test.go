package procfs

import (
	"syscall"
	"testing"
	"time"
)

// TestNanosleepQuiet checks that a sampler's short sleeps do not keep the
// Go scheduler's monitor thread busy: a blocking system call seen by the
// scheduler makes sysmon wake every 20 µs to take its P away, dozens of
// context switches per millisecond slept. The bound is relative to the
// number of sleeps: each costs the sleeping thread one switch, plus what
// the rest of the runtime does meanwhile.
func TestNanosleepQuiet(t *testing.T) {
	const sleeps = 300
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		t.Skipf("getrusage: %v", err)
	}
	start := time.Now()
	for i := 0; i < sleeps; i++ {
		Nanosleep(time.Millisecond)
	}
	el := time.Since(start)
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		t.Fatal(err)
	}
	if el < sleeps*time.Millisecond {
		t.Fatalf("%d sleeps of 1ms took %v: Nanosleep does not sleep", sleeps, el)
	}
	switches := after.Nvcsw - before.Nvcsw
	t.Logf("%d sleeps of 1ms in %v: %d voluntary context switches", sleeps, el, switches)
	if switches > 2*sleeps {
		t.Errorf("%d sleeps of 1ms caused %d voluntary context switches (more than 2 per sleep): the scheduler's monitor thread is woken by them", sleeps, switches)
	}
}
