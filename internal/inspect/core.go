package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// CoreStacks reads every Python thread's stack from a core file's
// target, as Stacks does from a live process (the same read). The state
// of each thread comes from its saved registers (the system call it was
// in). exe is the main program's path, for the native frames.
func CoreStacks(ctx context.Context, tgt target.Target, m *Memory, py *pyproc.Python, exe string, opt StackOptions) (_ *StackDump, err error) {
	pid := tgt.PID()
	sr := &stackRead{tgt: tgt, m: m, opt: opt, what: fmt.Sprintf("core of process %d", pid), gone: func(err error) error { return err },
		dump: &StackDump{PID: pid, Python: PythonRef{Version: py.Version.String(), Path: py.Path}}}
	if opt.Native {
		if sr.nv, err = nativeViewOf(tgt, py.Path, exe); err != nil {
			return nil, err
		}
		defer sr.nv.close()
	}
	if err := sr.read(ctx); err != nil {
		return nil, err
	}
	sr.finish()
	return sr.dump, nil
}

// CoreLocks is Locks on a core file's target: what each thread waited
// for when the core was made, who held it, and the cycles. The system
// call each thread was in comes from its saved registers (x86-64 cores
// read on x86-64; elsewhere every wait is unknown); the processes and
// descriptors waited on are not named (the core has no /proc), and no
// wait has a since.
func CoreLocks(ctx context.Context, tgt target.Target, m *Memory) (*LockReport, error) {
	pid := tgt.PID()
	snap, rd, _, err := readLockSnap(tgt, m, fmt.Sprintf("core of process %d", pid), func(err error) error { return err })
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var p *Live // no live process: nothing named through /proc
	return newLockReport(pid, p.analyseLocks(rd, m, snap), nil), nil
}

// CoreTasks reads every asyncio task from a core file's target, as Tasks
// does from a live process (3.7 to 3.15), with the same read (tasksOn). A
// sleep's deadline is given, not the time left (the core has no clock to
// measure it against).
func CoreTasks(ctx context.Context, tgt target.Target, m *Memory, py *pyproc.Python, opt TaskOptions) (_ *TaskDump, err error) {
	what := fmt.Sprintf("core of process %d", tgt.PID())
	if err := TasksSupported(py.Version, what); err != nil {
		return nil, err
	}
	// A core's mappings never fail to list: no error to convert.
	same := func(err error) error { return err }
	dbg, err := AsyncioDebugOn(tgt, py, what, same)
	if err != nil {
		return nil, err
	}
	return tasksOn(ctx, tgt, m, py, dbg, opt, same, func(read func(memory.Reader) error) (func() float64, error) {
		return nil, read(newPageCache(m.r))
	})
}

// OpenMemory is what the reports read the target pid through: its
// memory (r, and proc, closed by Close, when live: nil for a core), and
// the layout of its interpreter, version v and image img (ImageOf;
// 3.13+: from the target's own _Py_DebugOffsets). Warnings about the
// layout go to warn.
func OpenMemory(proc io.Closer, r memory.Reader, pid int, v pyproc.Version, img cpython.Image, warn func(string)) (*Memory, error) {
	l, err := layoutFor(r, img, pid, v, warn)
	if err != nil {
		return nil, err
	}
	return &Memory{proc: proc, r: r, l: l, img: img}, nil
}

// layoutFor picks the structure layout of the target's interpreter
// (layout.ForTarget): 3.13+ from its own _Py_DebugOffsets, checked, or
// pyglass's table with a warning. A free-threaded build and a version
// pyglass cannot decode are errs.NotPython, said in one line.
func layoutFor(r memory.Reader, img cpython.Image, pid int, v pyproc.Version, warn func(string)) (*layout.Layout, error) {
	rt, _ := img.RuntimeAddr()
	l, warnings, err := layout.ForTarget(r, rt, v.Major, v.Minor)
	for _, w := range warnings {
		warn(w)
	}
	switch {
	case errors.Is(err, layout.ErrFreeThreaded):
		return nil, errs.Newf(errs.NotPython, "run the program with a build of Python with the GIL (python3.N, not python3.Nt)",
			"process %d: Python %s is a free-threaded build (no GIL), which pyglass does not support yet", pid, v)
	case errors.Is(err, layout.ErrUnsupported):
		return nil, &errs.Error{Kind: errs.NotPython, Msg: fmt.Sprintf("process %d", pid), Err: err}
	case err != nil:
		return nil, &errs.Error{Kind: errs.NotPython, Msg: fmt.Sprintf("process %d: Python %s: cannot decode its structures", pid, v), Err: err}
	}
	return l, nil
}

// Reader is the memory the reports read.
func (m *Memory) Reader() memory.Reader { return m.r }

// Close closes the live process's memory (nothing for a core).
func (m *Memory) Close() {
	if m.proc != nil {
		m.proc.Close()
	}
}

// Layout is the interpreter's structure layout.
func (m *Memory) Layout() *layout.Layout { return m.l }

// Image is what the decoders know of the interpreter's image.
func (m *Memory) Image() cpython.Image { return m.img }
