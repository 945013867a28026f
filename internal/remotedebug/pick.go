package remotedebug

import (
	"fmt"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/memory"
)

// Pick is the thread PickThread chose.
type Pick struct {
	// Thread is the chosen thread state (Thread.Addr is what Request
	// takes).
	Thread cpython.Thread
	// TID is the thread's id in the caller's PID namespace, 0 when no
	// task of the process matched it.
	TID int
	// State is the kernel state of the task ('R', 'S', ...), 0 when
	// unknown.
	State byte
	// Likely is set when the thread holds the GIL or is running with a
	// Python frame: it should take a request within milliseconds. When
	// false every thread is blocked (sleeping, waiting on I/O or a lock),
	// and the request waits until the chosen thread next runs bytecode.
	Likely bool
	// Reason says why this thread was chosen, for messages.
	Reason string
}

// PickThread chooses the thread of process pid most likely to evaluate
// bytecode soon, since a PEP 768 request only fires when its thread
// checks its eval breaker: a thread blocked in C (time.sleep, a lock,
// I/O) never takes it until it returns to Python. In order of preference:
// the GIL holder running on a CPU (kernel state R), the GIL holder, a
// running thread with a Python frame, any thread with a Python frame,
// the main thread. Ties go to the main thread, then the newest thread.
// r reads pid's memory; runtime is the address of _PyRuntime.
func PickThread(r memory.Reader, pid int, runtime uint64) (Pick, error) {
	l, err := layout.FromDebugOffsets(r, runtime)
	if err != nil {
		return Pick{}, fmt.Errorf("reading the layout: %w", err)
	}
	if l.Major != 3 || l.Minor < 14 {
		return Pick{}, fmt.Errorf("target is %d.%d: %w", l.Major, l.Minor, ErrUnsupported)
	}
	interp, err := memory.NonNullPtr(r, runtime+uint64(l.RuntimeInterpretersHead))
	if err != nil {
		return Pick{}, fmt.Errorf("reading interpreters.head: %w", err)
	}
	img := &cpython.Image{Major: l.Major, Minor: l.Minor, PyRuntime: [2]uint64{runtime, runtime + 1}}
	threads, err := cpython.Threads(r, l, interp, cpython.ThreadOptions{Image: img, SkipNames: true})
	if len(threads) == 0 {
		if err == nil {
			err = fmt.Errorf("interpreter %#x has no threads", interp)
		}
		return Pick{}, fmt.Errorf("listing threads: %w", err)
	}
	tids := hostTIDs(procfs.New(pid))
	best, bestScore := Pick{}, -1
	for _, t := range threads {
		if t.Err != nil {
			continue
		}
		p := Pick{Thread: t, TID: tids[t.NativeID]}
		if p.TID != 0 {
			if st, err := procfs.New(pid).TaskStat(p.TID); err == nil {
				p.State = st.State
			}
		}
		running := p.State == 'R'
		score := 0
		switch {
		case t.HoldsGIL && running:
			score, p.Reason = 5, "holds the GIL and is running"
		case t.HoldsGIL:
			score, p.Reason = 4, "holds the GIL"
		case running && t.Frame != 0:
			score, p.Reason = 3, "is running Python code"
		case t.Frame != 0:
			score, p.Reason = 1, "has a Python frame but is blocked"
		default:
			p.Reason = "is idle"
		}
		p.Likely = score >= 3
		score *= 2
		if t.Main {
			score++ // ties go to the main thread
			p.Reason += " (main thread)"
		}
		if score > bestScore {
			best, bestScore = p, score
		}
	}
	if bestScore < 0 {
		return Pick{}, fmt.Errorf("reading threads: %w", threads[0].Err)
	}
	return best, nil
}

// hostTIDs maps the thread ids the target sees (native_thread_id) to the
// ids in our /proc. They differ only when the target lives in another
// PID namespace. Threads that cannot be read are left out.
func hostTIDs(p procfs.Proc) map[int]int {
	m := map[int]int{}
	ids, err := p.TaskIDs()
	if err != nil {
		return m
	}
	if st, err := p.Status(); err == nil && len(st.NSpid) <= 1 {
		for _, id := range ids {
			m[id] = id
		}
		return m
	}
	for _, id := range ids {
		if st, err := p.TaskStatus(id); err == nil {
			m[st.InnerPID()] = id
		}
	}
	return m
}
