package agent

import (
	"context"
	"time"
)

// StopWait is how long code may take to stop after a break before the
// user is told that it is in a call that does not check for interrupts
// (or, after a timeout, before pyglass gives up on it).
const StopWait = 2 * time.Second

// Outcome says how Await ended.
type Outcome int

const (
	// Finished: run returned by itself (the code may have been
	// interrupted by a break and raised KeyboardInterrupt).
	Finished Outcome = iota
	// Stopped: the deadline passed, a break was sent and the code
	// stopped within StopWait.
	Stopped
	// StillRunning: the deadline passed and the code did not stop within
	// StopWait of the break.
	StillRunning
	// Left: after the notice, the user asked again: pyglass stops waiting.
	Left
	// Cancelled: the context ended.
	Cancelled
)

// AwaitOptions say what may stop the code while Await waits for it.
type AwaitOptions struct {
	// Interrupt receives the user's interrupt requests (Ctrl-C). The first
	// sends a break; if the code has not stopped StopWait later, OnStuck
	// is called, and the next request makes Await give up (Left). Those
	// that come before OnStuck send a break again (the agent drops one
	// that comes within half a second of the last it raised).
	Interrupt <-chan struct{}
	// Deadline, unless zero: a break is sent then, and Await gives up
	// StopWait later (StillRunning) unless the code stopped.
	Deadline time.Time
	// OnStuck, if set, is called once when the code has not stopped
	// StopWait after the user's first interrupt.
	OnStuck func()
}

// Await calls run (which sends a request or a line and reads the agent's
// output, on c) on another goroutine and waits for it, sending breaks as
// o asks. When it gives up (Left, StillRunning, Cancelled) it closes c,
// which ends run, and waits for run to return, so that nothing is written
// to run's writers after Await returns; the code goes on in the target
// and the agent ends when it returns. err is run's error, nil when Await
// gave up.
func (c *Conn) Await(ctx context.Context, run func() error, o AwaitOptions) (Outcome, error) {
	done := make(chan error, 1)
	go func() { done <- run() }()
	var deadline, stuck <-chan time.Time
	if !o.Deadline.IsZero() {
		t := time.NewTimer(time.Until(o.Deadline))
		defer t.Stop()
		deadline = t.C
	}
	var stuckTimer *time.Timer
	defer func() {
		if stuckTimer != nil {
			stuckTimer.Stop()
		}
	}()
	timedOut, noticed := false, false
	giveUp := func(out Outcome) (Outcome, error) {
		c.Close()
		<-done
		return out, nil
	}
	for {
		select {
		case err := <-done:
			if timedOut {
				return Stopped, err
			}
			return Finished, err
		case <-ctx.Done():
			return giveUp(Cancelled)
		case <-o.Interrupt:
			if noticed {
				return giveUp(Left)
			}
			c.Break()
			if stuckTimer == nil {
				stuckTimer = time.NewTimer(StopWait)
				stuck = stuckTimer.C
			}
		case <-stuck:
			stuck = nil
			if timedOut {
				return giveUp(StillRunning)
			}
			noticed = true
			if o.OnStuck != nil {
				o.OnStuck()
			}
		case <-deadline:
			deadline = nil
			timedOut = true
			c.Break()
			if stuckTimer != nil {
				stuckTimer.Stop()
			}
			stuckTimer = time.NewTimer(StopWait)
			stuck = stuckTimer.C
		}
	}
}
