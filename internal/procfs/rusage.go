package procfs

import (
	"syscall"
	"time"
)

// SelfCPU returns the CPU time (user and system) this process has used so
// far, 0 when the kernel does not say.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Nanosleep sleeps d with the kernel's high-resolution timers, blocking
// the calling OS thread: Go's own timers wake up to a millisecond late,
// too late for a sampler at several kHz. Meant for short waits (the
// caller checks for cancellation between them).
func Nanosleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Nanosleep(&ts, nil)
}
