// Package remotedebug makes a CPython 3.14+ process run a Python script
// file through the interface of PEP 768 (the one behind sys.remote_exec),
// without ptrace and without stopping the process.
//
// The protocol, from CPython's Python/remote_debugging.c and
// Python/ceval_gil.c (3.14):
//
//   - _Py_DebugOffsets, at the start of _PyRuntime, gives the offsets of
//     PyThreadState.eval_breaker, PyThreadState.remote_debugger_support
//     (a struct holding int32 debugger_pending_call and char
//     debugger_script_path[512]) and PyInterpreterState.config.remote_debug.
//   - The debugger writes the NUL-terminated path, sets
//     debugger_pending_call to 1 and sets _PY_EVAL_PLEASE_STOP_BIT (bit 5)
//     of the thread's eval_breaker.
//   - The thread, at its next eval-breaker check (loop back edges, calls;
//     never while blocked in C code), runs _Py_HandlePending, which ends
//     in _PyRunRemoteDebugger: if config.remote_debug is 1 and the pending
//     flag is 1, it clears the flag, copies the path, raises the audit
//     event "remote_debugger_script", and executes the file's source in a
//     fresh namespace. Errors go to sys.unraisablehook. Nothing reports
//     back to the debugger: the script must.
//
// The path is opened by the target, in its mount namespace and with its
// credentials. Which thread runs the script is the caller's choice; see
// PickThread.
package remotedebug

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

var (
	// ErrUnsupported is returned for a target older than 3.14, whose
	// _Py_DebugOffsets has no debugger_support group.
	ErrUnsupported = errors.New("PEP 768 remote execution needs CPython 3.14+")
	// ErrDisabled is returned when the target runs with remote debugging
	// off (PYTHON_DISABLE_REMOTE_DEBUG, -X disable-remote-debug, or built
	// --without-remote-debug).
	ErrDisabled = errors.New("remote debugging disabled in the target")
	// ErrPending is returned by Request when the thread already has a
	// request it has not taken yet (ours or another debugger's).
	ErrPending = errors.New("a remote script is already pending on this thread")
	// ErrBadPath is returned for an empty script path, one holding a NUL
	// byte, or one too long for debugger_script_path.
	ErrBadPath = errors.New("unusable script path")
	// ErrNoThread is returned when the thread state is not in its
	// interpreter's thread list (the thread exited).
	ErrNoThread = errors.New("thread state not found in its interpreter")
)

// pleaseStopBit is _PY_EVAL_PLEASE_STOP_BIT (Include/internal/pycore_ceval.h).
// Setting it forces the thread into _Py_HandlePending, which ends by
// checking the pending remote script. In a build with the GIL the thread
// only drops and retakes the GIL for it.
const pleaseStopBit = 1 << 5

// gilDropRequestBit is _PY_GIL_DROP_REQUEST_BIT: another thread waits for
// the GIL. Request never writes it back (see there): set when nobody
// waits, it parks the holder in drop_gil until some thread takes the GIL,
// which may be never.
const gilDropRequestBit = 1 << 0

// recheckBits are the eval_breaker bits whose handlers in
// _Py_HandlePending only look and do nothing when nothing is pending:
// _PY_SIGNALS_PENDING_BIT (a signal's Python handler to run),
// _PY_CALLS_TO_DO_BIT (Py_AddPendingCall's queue) and
// _PY_ASYNC_EXCEPTION_BIT (PyThreadState_SetAsyncExc). Request sets them
// (see there).
const recheckBits = 1<<1 | 1<<2 | 1<<3

// maxThreads bounds the walk of an interpreter's thread list.
const maxThreads = 1 << 16

// offsets are the _Py_DebugOffsets members this package uses.
type offsets struct {
	interpretersHead uint64 // runtime_state.interpreters_head
	threadsHead      uint64 // interpreter_state.threads_head
	threadsMain      uint64 // interpreter_state.threads_main
	tstateNext       uint64 // thread_state.next
	tstateInterp     uint64 // thread_state.interp
	tstateSize       uint64 // thread_state.size
	evalBreaker      uint64 // debugger_support.eval_breaker (in PyThreadState)
	support          uint64 // debugger_support.remote_debugger_support (in PyThreadState)
	enabled          uint64 // debugger_support.remote_debugging_enabled (in PyInterpreterState)
	pending          uint64 // debugger_support.debugger_pending_call (in the support struct)
	path             uint64 // debugger_support.debugger_script_path (in the support struct)
	pathSize         uint64 // debugger_support.debugger_script_path_size
}

// readOffsets decodes and checks the debug offsets at runtime.
func readOffsets(r memory.Reader, runtime uint64) (*offsets, error) {
	d, err := layout.ReadDebugOffsets(r, runtime)
	if err != nil {
		if errors.Is(err, layout.ErrUnsupported) {
			return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
		return nil, fmt.Errorf("reading debug offsets: %w", err)
	}
	if d.Major() != 3 || d.Minor() < 14 {
		return nil, fmt.Errorf("target is %d.%d: %w", d.Major(), d.Minor(), ErrUnsupported)
	}
	v := d.Values
	get := func(name string) (uint64, error) {
		x, ok := v[name]
		if !ok {
			return 0, fmt.Errorf("debug offsets of %d.%d lack %s: %w", d.Major(), d.Minor(), name, ErrUnsupported)
		}
		return x, nil
	}
	o := &offsets{}
	fields := []struct {
		name string
		dst  *uint64
	}{
		{"runtime_state.interpreters_head", &o.interpretersHead},
		{"interpreter_state.threads_head", &o.threadsHead},
		{"interpreter_state.threads_main", &o.threadsMain},
		{"thread_state.next", &o.tstateNext},
		{"thread_state.interp", &o.tstateInterp},
		{"thread_state.size", &o.tstateSize},
		{"debugger_support.eval_breaker", &o.evalBreaker},
		{"debugger_support.remote_debugger_support", &o.support},
		{"debugger_support.remote_debugging_enabled", &o.enabled},
		{"debugger_support.debugger_pending_call", &o.pending},
		{"debugger_support.debugger_script_path", &o.path},
		{"debugger_support.debugger_script_path_size", &o.pathSize},
	}
	for _, f := range fields {
		if *f.dst, err = get(f.name); err != nil {
			return nil, err
		}
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("debug offsets of %d.%d: %w", d.Major(), d.Minor(), err)
	}
	return o, nil
}

// check rejects offsets that would make us write outside a PyThreadState.
func (o *offsets) check() error {
	const maxStruct = 1 << 20
	switch {
	case o.tstateSize == 0 || o.tstateSize > maxStruct:
		return fmt.Errorf("thread_state.size %d: %w", o.tstateSize, layout.ErrBadDebugOffsets)
	case o.pathSize < 2 || o.pathSize > 1<<16:
		return fmt.Errorf("debugger_script_path_size %d: %w", o.pathSize, layout.ErrBadDebugOffsets)
	case o.evalBreaker+8 > o.tstateSize:
		return fmt.Errorf("eval_breaker %d outside PyThreadState: %w", o.evalBreaker, layout.ErrBadDebugOffsets)
	case o.support+o.pending+4 > o.tstateSize || o.support+o.path+o.pathSize > o.tstateSize:
		return fmt.Errorf("remote_debugger_support %d outside PyThreadState: %w", o.support, layout.ErrBadDebugOffsets)
	case o.enabled > maxStruct, o.interpretersHead > maxStruct, o.threadsHead > maxStruct,
		o.threadsMain > maxStruct, o.tstateNext > maxStruct, o.tstateInterp > maxStruct:
		return layout.ErrBadDebugOffsets
	}
	return nil
}

func (o *offsets) pendingAddr(tstate uint64) uint64 { return tstate + o.support + o.pending }
func (o *offsets) pathAddr(tstate uint64) uint64    { return tstate + o.support + o.path }

// enabledIn reads config.remote_debug of interp.
func (o *offsets) enabledIn(r memory.Reader, interp uint64) (bool, error) {
	v, err := memory.I32(r, interp+o.enabled)
	if err != nil {
		return false, fmt.Errorf("reading config.remote_debug: %w", err)
	}
	return v == 1, nil
}

// Enabled reports whether remote debugging is on in the target whose
// _PyRuntime is at runtime: config.remote_debug of the interpreter at
// the head of the interpreter list (the main one unless subinterpreters
// exist; they inherit the setting). It fails with ErrUnsupported before
// 3.14.
func Enabled(r memory.Reader, runtime uint64) (bool, error) {
	o, err := readOffsets(r, runtime)
	if err != nil {
		return false, err
	}
	interp, err := memory.NonNullPtr(r, runtime+o.interpretersHead)
	if err != nil {
		return false, fmt.Errorf("reading interpreters.head: %w", err)
	}
	return o.enabledIn(r, interp)
}

// MainThread returns the address of the main thread's PyThreadState
// (threads.main of the head interpreter), the thread sys.remote_exec
// uses by default.
func MainThread(r memory.Reader, runtime uint64) (uint64, error) {
	o, err := readOffsets(r, runtime)
	if err != nil {
		return 0, err
	}
	interp, err := memory.NonNullPtr(r, runtime+o.interpretersHead)
	if err != nil {
		return 0, fmt.Errorf("reading interpreters.head: %w", err)
	}
	t, err := memory.NonNullPtr(r, interp+o.threadsMain)
	if err != nil {
		return 0, fmt.Errorf("reading threads.main: %w", err)
	}
	return t, nil
}

// liveThread returns tstate's interpreter after checking that tstate is
// in that interpreter's thread list, so that we never write into a freed
// PyThreadState.
func (o *offsets) liveThread(r memory.Reader, tstate uint64) (uint64, error) {
	interp, err := memory.NonNullPtr(r, tstate+o.tstateInterp)
	if err != nil {
		return 0, fmt.Errorf("reading tstate->interp: %w", err)
	}
	t, err := memory.Ptr(r, interp+o.threadsHead)
	if err != nil {
		return 0, fmt.Errorf("reading threads.head: %w", err)
	}
	for i := 0; t != 0 && i < maxThreads; i++ {
		if t == tstate {
			return interp, nil
		}
		if t, err = memory.Ptr(r, t+o.tstateNext); err != nil {
			return 0, fmt.Errorf("walking the thread list: %w", err)
		}
	}
	return 0, fmt.Errorf("thread state %#x: %w", tstate, ErrNoThread)
}

// write writes p at addr in full.
func write(w ReadWriter, addr uint64, p []byte) error {
	n, err := w.WriteAt(p, addr)
	if err == nil && n != len(p) {
		err = memory.ErrShortRead
	}
	if err != nil {
		return fmt.Errorf("writing %d bytes at %#x: %w", len(p), addr, err)
	}
	return nil
}

// Request asks the thread whose PyThreadState is at tstate to run the
// script at scriptPath (a path in the target's mount namespace) the next
// time it checks its eval breaker. It returns once the request is
// written; it does not wait for the thread. Fails with ErrDisabled,
// ErrPending, ErrBadPath, ErrNoThread or ErrUnsupported without writing
// anything.
//
// Writes, in this order: the path and its NUL into debugger_script_path,
// int32 1 into debugger_pending_call, then bit 5 into the lowest byte of
// eval_breaker. That last one is a read-modify-write from outside the
// process, as in CPython's own sys.remote_exec, and not atomic: the
// target may set or clear a bit between our read and our write, a few
// microseconds apart.
//   - A bit it set meanwhile would be lost. For a signal, a pending call
//     or an asynchronous exception, nothing sets it again: a Python
//     signal handler (SIGTERM's, SIGINT's) would not run until the next
//     signal. So these three bits are always written set: where nothing
//     is pending, their handlers in _Py_HandlePending only look. The
//     target asks for the others again: the GC at its next allocation,
//     the GIL waiter after its switch interval.
//   - A bit it cleared meanwhile comes back. For all but one that costs
//     one spurious, harmless check in _Py_HandlePending. The exception
//     is the GIL drop request: the thread that waited for it has the GIL
//     by then, and a holder that finds the bit set in drop_gil waits for
//     another thread to take the GIL, which, with the others asleep, is
//     forever. So the byte is written with that bit clear: a request
//     pending at our read is then lost instead, and its waiter asks again
//     after one switch interval (5 ms).
//
// Writing one byte rather than the whole word leaves the instrumentation
// version (bits 8 and up) untouched, so sys.monitoring and tracing cannot
// be confused. The write is skipped when bit 5 is already set.
func Request(rw ReadWriter, runtime, tstate uint64, scriptPath string) error {
	o, err := readOffsets(rw, runtime)
	if err != nil {
		return err
	}
	if scriptPath == "" || uint64(len(scriptPath)) >= o.pathSize || bytes.IndexByte([]byte(scriptPath), 0) >= 0 {
		return fmt.Errorf("script path %q (limit %d bytes): %w", scriptPath, o.pathSize-1, ErrBadPath)
	}
	interp, err := o.liveThread(rw, tstate)
	if err != nil {
		return err
	}
	on, err := o.enabledIn(rw, interp)
	if err != nil {
		return err
	}
	if !on {
		return ErrDisabled
	}
	pending, err := memory.I32(rw, o.pendingAddr(tstate))
	if err != nil {
		return fmt.Errorf("reading debugger_pending_call: %w", err)
	}
	if pending != 0 {
		return ErrPending
	}
	if err := write(rw, o.pathAddr(tstate), append([]byte(scriptPath), 0)); err != nil {
		return fmt.Errorf("writing the script path: %w", err)
	}
	var one [4]byte
	memory.Order.PutUint32(one[:], 1)
	if err := write(rw, o.pendingAddr(tstate), one[:]); err != nil {
		return fmt.Errorf("setting debugger_pending_call: %w", err)
	}
	low, err := memory.U8(rw, tstate+o.evalBreaker)
	if err != nil {
		return fmt.Errorf("reading eval_breaker: %w", err)
	}
	if low&pleaseStopBit == 0 {
		if err := write(rw, tstate+o.evalBreaker, []byte{low&^gilDropRequestBit | recheckBits | pleaseStopBit}); err != nil {
			return fmt.Errorf("setting eval_breaker: %w", err)
		}
	}
	return nil
}

// Pending reports whether a request on tstate is still waiting for the
// thread (debugger_pending_call is 1). After Request, false means the
// thread has taken the request: the script ran, is running, or failed
// (its errors went to the target's sys.unraisablehook).
func Pending(r memory.Reader, runtime, tstate uint64) (bool, error) {
	o, err := readOffsets(r, runtime)
	if err != nil {
		return false, err
	}
	v, err := memory.I32(r, o.pendingAddr(tstate))
	if err != nil {
		return false, fmt.Errorf("reading debugger_pending_call: %w", err)
	}
	return v != 0, nil
}

// Outcome is what Cancel found.
type Outcome int

const (
	// Cancelled: the request was withdrawn; the script cannot run.
	Cancelled Outcome = iota
	// Taken: the thread had taken the request (or none was pending)
	// before Cancel touched it: the script ran or is running.
	Taken
	// Unsure: the thread took the request while Cancel was emptying the
	// path, so it copied either the path (the script runs) or an empty
	// one (nothing runs): the caller cannot know which, and must not
	// wait for the script for long.
	Unsure
)

// Cancel withdraws a request on tstate that the thread has not taken
// yet, and says what became of it.
//
// It first empties the path (the thread runs nothing for an empty path),
// then, if the request is still pending, clears debugger_pending_call.
// A thread that takes the request after the path is emptied copies an
// empty path; so when the flag is still set after that write, the script
// cannot run (Cancelled). The thread clears the flag before it copies the
// path (_PyRunRemoteDebugger): a flag found cleared after the path was
// emptied may have been cleared just before, with the copy just after
// (Unsure). Bit 5 of eval_breaker is left set: it costs the thread one
// pass through _Py_HandlePending.
func Cancel(rw ReadWriter, runtime, tstate uint64) (Outcome, error) {
	o, err := readOffsets(rw, runtime)
	if err != nil {
		return Taken, err
	}
	pending, err := memory.I32(rw, o.pendingAddr(tstate))
	if err != nil {
		return Taken, fmt.Errorf("reading debugger_pending_call: %w", err)
	}
	if pending == 0 {
		return Taken, nil
	}
	if err := write(rw, o.pathAddr(tstate), []byte{0}); err != nil {
		return Taken, fmt.Errorf("clearing the script path: %w", err)
	}
	if pending, err = memory.I32(rw, o.pendingAddr(tstate)); err != nil {
		return Unsure, fmt.Errorf("reading debugger_pending_call: %w", err)
	}
	if pending == 0 {
		return Unsure, nil // taken between our two reads
	}
	if err := write(rw, o.pendingAddr(tstate), make([]byte, 4)); err != nil {
		return Unsure, fmt.Errorf("clearing debugger_pending_call: %w", err)
	}
	return Cancelled, nil
}
