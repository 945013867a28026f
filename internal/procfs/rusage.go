package procfs

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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
// caller checks for cancellation between them: at most a few
// milliseconds, as the calling goroutine keeps its P meanwhile).
//
// It is a raw system call: the Go scheduler does not see a goroutine in a
// blocking system call, so its monitor thread (sysmon) does not wake every
// 20 µs to hand the P to another thread, as it would at each of a
// sampler's thousands of sleeps a second (that cost more CPU than the
// sampling itself).
func Nanosleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := unix.NsecToTimespec(int64(d))
	syscall.RawSyscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}

// Sleep sleeps d with the kernel's high-resolution timers, in a blocking
// system call: the Go scheduler gives the calling goroutine's P to other
// goroutines meanwhile. For waits of milliseconds, where Nanosleep would
// keep the P from them; the calling thread itself wakes up, unlike a
// goroutine woken by a Go timer (another thread runs the timer first).
func Sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := unix.NsecToTimespec(int64(d))
	syscall.Syscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}
