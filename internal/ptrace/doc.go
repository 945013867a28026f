// Package ptrace is pyglass's thin layer over the Linux ptrace API.
//
// Every ptrace and wait4 call is made by one locked OS thread owned by a
// Tracer (ptrace relationships belong to a thread, not a process). Code
// runs on it through Tracer.Do; the functions of this package that take a
// tid (Seize, Interrupt, Wait, Detach, GetState, ...) must only be called
// from inside a Do callback.
//
// Freeze stops every thread of a process for a consistent memory read and
// Frozen.Thaw releases them, re-delivering any signal that arrived
// meanwhile and leaving a process that was stopped (SIGSTOP) stopped.
//
// Mem reads a process's memory with process_vm_readv and writes it through
// /proc/PID/mem (which, for a tracer, also patches read-only code pages).
//
// Caveat: when the target is a child of the calling process, a concurrent
// os/exec Wait on it can consume ptrace stop notifications; wait for such
// children only after every thread has been detached.
package ptrace
