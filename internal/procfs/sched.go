package procfs

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TaskExecStart returns se.exec_start of /proc/PID/task/TID/sched: the
// scheduler's clock when the thread last started running or, for a
// thread asleep, when it stopped (the kernel updates it as the thread
// leaves the CPU). Only differences with another exec_start read on the
// same machine mean anything: see SinceRan.
func (p Proc) TaskExecStart(tid int) (time.Duration, error) {
	b, err := p.readFile("task/" + strconv.Itoa(tid) + "/sched")
	if err != nil {
		return 0, err
	}
	return parseExecStart(b)
}

// parseExecStart reads "se.exec_start : 12569410.100861" (milliseconds,
// with nanoseconds after the point).
func parseExecStart(b []byte) (time.Duration, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(bytes.TrimSpace(key)) != "se.exec_start" {
			continue
		}
		ms, frac, _ := bytes.Cut(bytes.TrimSpace(val), []byte("."))
		m, err := strconv.ParseUint(string(ms), 10, 40)
		if err != nil || len(frac) > 6 {
			break
		}
		ns := uint64(0)
		if len(frac) > 0 {
			if ns, err = strconv.ParseUint(string(frac), 10, 32); err != nil {
				break
			}
			for i := len(frac); i < 6; i++ {
				ns *= 10
			}
		}
		return time.Duration(m)*time.Millisecond + time.Duration(ns), nil
	}
	return 0, fmt.Errorf("no se.exec_start in the scheduler's statistics: %w", ErrParse)
}

// SinceRan returns, for each of tids (threads of p), how long ago it last
// ran: the calling thread's own exec_start (it is running: now, on the
// scheduler's clock, late by at most a tick) minus the thread's. A thread
// missing from the result could not be read (a kernel without
// CONFIG_SCHED_DEBUG has no sched file); a thread on a CPU comes out near
// zero.
//
// exec_start is each CPU's task clock, which leaves out the time spent
// in interrupts and, in a virtual machine, the time the host ran
// something else: two CPUs' clocks drift apart by milliseconds. So the
// calling thread moves to each CPU the threads last ran on
// (/proc/PID/task/TID/stat), and reads its own exec_start there for the
// threads that ran there; its affinity is put back after. When it
// cannot move (a CPU outside the process's cpuset), it reads the clock
// where it is.
func (p Proc) SinceRan(tids []int) map[int]time.Duration {
	runtime.LockOSThread()
	var orig unix.CPUSet
	movable := unix.SchedGetaffinity(0, &orig) == nil
	moved := false
	defer func() {
		if moved && unix.SchedSetaffinity(0, &orig) != nil {
			return // a thread left pinned is not given back: it ends with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	// The threads' clocks first, then, one CPU at a time, the reader's
	// own: a move per CPU, not per thread.
	type last struct {
		tid, cpu int
		at       time.Duration
	}
	var ls []last
	for _, tid := range tids {
		t, err := p.TaskExecStart(tid)
		if err != nil {
			continue
		}
		l := last{tid: tid, cpu: -1, at: t}
		if st, err := p.TaskStat(tid); err == nil {
			l.cpu = st.Processor
		}
		ls = append(ls, l)
	}
	slices.SortStableFunc(ls, func(a, b last) int { return a.cpu - b.cpu })
	out := map[int]time.Duration{}
	var now time.Duration
	for i, l := range ls {
		if i == 0 || l.cpu != ls[i-1].cpu {
			if movable && l.cpu >= 0 {
				var one unix.CPUSet
				one.Set(l.cpu)
				if unix.SchedSetaffinity(0, &one) == nil {
					moved = true
				}
			}
			var err error
			if now, err = Self().TaskExecStart(syscall.Gettid()); err != nil {
				return map[int]time.Duration{}
			}
		}
		out[l.tid] = max(now-l.at, 0)
	}
	return out
}

// ShortSlice locks the calling goroutine to its OS thread and asks the
// kernel for a short time slice for that thread (sched_setattr's
// sched_runtime for a SCHED_OTHER thread, Linux 6.12 and later). On
// waking, the thread then preempts one that has run less than a normal
// slice on its CPU, instead of waiting up to a few milliseconds for it
// to block or use its slice up. A sampler wants this: its late wake-ups
// would fall where the threads it samples block, and bias what it sees.
// The thread's share of the CPU does not change (a slice is how long a
// thread may run before another runnable one gets its turn, not a
// priority). ok says whether the kernel took the slice. The returned
// function gives the thread the kernel's default slice again (a custom
// slice it had before is not kept) and unlocks it. On kernels without
// custom slices, or when the call is refused, nothing changes.
func ShortSlice(slice time.Duration) (restore func(), ok bool) {
	runtime.LockOSThread()
	old, err := unix.SchedGetAttr(0, 0)
	if err != nil || old.Policy != unix.SCHED_NORMAL {
		return runtime.UnlockOSThread, false
	}
	attr := *old
	attr.Runtime = uint64(slice)
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return runtime.UnlockOSThread, false
	}
	// A kernel without custom slices takes sched_runtime and ignores
	// it; one with them says the slice in force.
	now, err := unix.SchedGetAttr(0, 0)
	ok = err == nil && now.Runtime == uint64(slice)
	return func() {
		attr.Runtime = 0 // the default slice
		unix.SchedSetAttr(0, &attr, 0)
		runtime.UnlockOSThread()
	}, ok
}

// CustomSlices says whether this kernel gives a thread the time slice it
// asks for (ShortSlice).
func CustomSlices() bool {
	done := make(chan bool)
	go func() {
		restore, ok := ShortSlice(500 * time.Microsecond)
		restore()
		done <- ok
	}()
	return <-done
}
