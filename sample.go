package pyglass

import (
	"context"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/inspect"
)

// MaxRate as SampleOptions.Rate samples as fast as pyglass can, one
// sample right after the other.
const MaxRate = inspect.MaxRate

// The sampler's types (defined with it, in internal/inspect).
type (
	// SampleOptions configure Sample: Rate, Duration, Idle, GIL,
	// Blocking, MaxDepth.
	SampleOptions = inspect.SampleOptions
	// SampledFrame is one frame of a sampled stack.
	SampledFrame = inspect.SampledFrame
	// ThreadSample is one thread's stack in a Sample.
	ThreadSample = inspect.ThreadSample
	// Sample is every selected thread's stack at one instant.
	// Process.Sample passes the same Sample, reused, to each call of
	// its callback: copy what must outlive the call.
	Sample = inspect.Sample
	// SampleStats says how a sampling run went.
	SampleStats = inspect.SampleStats
)

// Sample reads every Python thread's stack rate times a second and calls
// fn with each sample, until opt.Duration, ctx's end, the target's exit
// or an error from fn (returned as is). Without opt.Blocking the target
// is never paused, traced or written to: a stack that changes while it is
// read is read again, and counted as lost if it changes every time, never
// recorded wrong. A panic of the sampler (a bug, or target memory no
// check foresaw) is returned as an ErrInternal error, after the threads
// were let go; a panic of fn is fn's own and goes on to the caller.
func (p *Process) Sample(ctx context.Context, opt SampleOptions, fn func(*Sample) error) (_ *SampleStats, err error) {
	var fnPanic *any // set when fn panicked: guard must not swallow it
	defer func() {
		if fnPanic != nil {
			panic(*fnPanic)
		}
	}()
	defer guard(&err, "sample", p.pid)
	if p.proc.Zombie {
		return nil, errs.Newf(ErrNotPython, "", "process %d is a zombie", p.pid)
	}
	m, err := p.openMemory()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return inspect.RunSampler(ctx, p.live(), m, opt, func(s *Sample) error { return callSampleFn(fn, s, &fnPanic) })
}

// callSampleFn calls the caller's fn, noting in *panicked a panic of it
// before passing it on.
func callSampleFn(fn func(*Sample) error, s *Sample, panicked **any) error {
	defer func() {
		if r := recover(); r != nil {
			*panicked = &r
			panic(r)
		}
	}()
	return fn(s)
}
