package pyglass

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/pyglass/pyglass/internal/agent"
	"github.com/pyglass/pyglass/internal/channel"
	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/remotedebug"
	"github.com/pyglass/pyglass/target/live"
)

// pep768Wait is how long a PEP 768 request may wait for its thread to
// take it before pyglass cancels it and uses ptrace instead.
const pep768Wait = 250 * time.Millisecond

// pep768Unsure is how long pyglass waits for the agent of a request
// whose cancellation raced with the thread taking it (remotedebug.Unsure)
// before it uses ptrace instead.
const pep768Unsure = 2 * time.Second

// pep768Taken is how long pyglass waits for the agent of a request a
// thread took before it uses ptrace instead.
const pep768Taken = 3 * time.Second

// earliest returns the earlier of two times.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// tryRemoteExec starts the agent through PEP 768 (Python 3.14+: the
// mechanism behind sys.remote_exec) when the target allows it and one of
// its threads is running Python, so that it takes the request at its next
// bytecode boundary: no ptrace at all, nothing interrupted. It returns a
// nil connection when it did not apply (the caller then uses ptrace, if
// deadline has not passed): the target disables remote debugging, every
// thread is blocked in C (such a thread would only take the request when
// it wakes), the request was not taken quickly and could be cancelled,
// or it was taken and no agent came soon (why says so, for the method).
func (p *Process) tryRemoteExec(ctx context.Context, ch *channel.Channel, deadline time.Time) (_ *net.UnixConn, why string, _ error) {
	v := p.py.Version
	if v.Major != 3 || v.Minor < 14 {
		return nil, "", nil
	}
	img := inspect.ImageOf(p.py)
	rt, ok := img.RuntimeAddr()
	if !ok {
		return nil, "", nil
	}
	pm, err := live.Open(p.pid)
	if err != nil {
		return nil, "", nil
	}
	defer pm.Close()
	if on, err := remotedebug.Enabled(pm, rt); err != nil || !on {
		return nil, "", nil
	}
	pick, err := remotedebug.PickThread(pm, p.pid, rt)
	if err != nil || !pick.Likely {
		return nil, "", nil
	}
	// The script runs on the thread that takes it: it only starts a new
	// Python thread for the agent and returns, so that thread goes on.
	script := "try:\n    __import__('_thread').start_new_thread(exec, (" +
		strconv.Quote(agent.Bootstrap(ch.Dir)) + ", {'__builtins__': __builtins__}))\nexcept BaseException:\n    pass\n"
	if err := ch.WriteFile("remote.py", []byte(script)); err != nil {
		return nil, "", err
	}
	tstate := pick.Thread.Addr
	if err := remotedebug.Request(pm, rt, tstate, ch.Path("remote.py")); err != nil {
		return nil, "", nil
	}
	uc, err := ch.Accept(ctx, time.Now().Add(pep768Wait))
	if err == nil {
		return uc, "", nil
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		remotedebug.Cancel(pm, rt, tstate)
		return nil, "", err
	}
	out, cerr := remotedebug.Cancel(pm, rt, tstate)
	if cerr == nil && out == remotedebug.Cancelled {
		return nil, "", nil
	}
	// The thread took the request, or may have (Unsure: it took it as
	// its path was being emptied). Its agent comes at once if it ran the
	// script. It never comes if the thread copied the emptied path, or
	// if an audit hook refused "cpython.remote_debugger_script" after
	// the thread had cleared the request's flag. Waiting for it as for a
	// thread held in C code waited out the whole timeout (a census hung
	// a minute in CI; with such a hook, exec blamed the GIL's holder).
	// Wait briefly, then use ptrace: an agent that comes later finds
	// nobody listening and exits.
	wait, why := pep768Taken, fmt.Sprintf(" (a thread took the PEP 768 request, but no agent came within %v: an audit hook may refuse remote scripts)", pep768Taken)
	if out == remotedebug.Unsure {
		wait, why = pep768Unsure, ""
	}
	uc, err = p.acceptWhileAlive(ctx, ch, earliest(deadline, time.Now().Add(wait)))
	if err == nil {
		return uc, "", nil
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, "", err
	}
	return nil, why, nil
}
