package pyglass

import (
	"context"
	"errors"
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
// thread took before it uses ptrace instead (see Process.session).
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
// nil connection when it did not apply (the caller then uses ptrace): the
// target disables remote debugging, every thread is blocked in C (such a
// thread would only take the request when it wakes), or the request was
// not taken quickly and could be cancelled.
func (p *Process) tryRemoteExec(ctx context.Context, ch *channel.Channel) (*net.UnixConn, error) {
	v := p.py.Version
	if v.Major != 3 || v.Minor < 14 {
		return nil, nil
	}
	img := inspect.ImageOf(p.py)
	rt, ok := img.RuntimeAddr()
	if !ok {
		return nil, nil
	}
	pm, err := live.Open(p.pid)
	if err != nil {
		return nil, nil
	}
	defer pm.Close()
	if on, err := remotedebug.Enabled(pm, rt); err != nil || !on {
		return nil, nil
	}
	pick, err := remotedebug.PickThread(pm, p.pid, rt)
	if err != nil || !pick.Likely {
		return nil, nil
	}
	// The script runs on the thread that takes it: it only starts a new
	// Python thread for the agent and returns, so that thread goes on.
	script := "try:\n    __import__('_thread').start_new_thread(exec, (" +
		strconv.Quote(agent.Bootstrap(ch.Dir)) + ", {'__builtins__': __builtins__}))\nexcept BaseException:\n    pass\n"
	if err := ch.WriteFile("remote.py", []byte(script)); err != nil {
		return nil, err
	}
	tstate := pick.Thread.Addr
	if err := remotedebug.Request(pm, rt, tstate, ch.Path("remote.py")); err != nil {
		return nil, nil
	}
	uc, err := ch.Accept(ctx, time.Now().Add(pep768Wait))
	if err == nil {
		return uc, nil
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		remotedebug.Cancel(pm, rt, tstate)
		return nil, err
	}
	switch out, cerr := remotedebug.Cancel(pm, rt, tstate); {
	case cerr == nil && out == remotedebug.Cancelled:
		return nil, nil
	case out == remotedebug.Unsure:
		// The thread took the request as its path was being emptied:
		// the agent comes at once if the thread copied the path first,
		// never if it copied the empty one. Waiting for it as for a
		// request taken would wait out the whole timeout (seen once in
		// CI: a census hung a minute). Wait briefly, then use ptrace; an
		// agent that comes later finds nobody listening and exits.
		if uc, err := ch.Accept(ctx, time.Now().Add(pep768Unsure)); err == nil {
			return uc, nil
		}
		return nil, nil
	}
	// The thread took the request: the agent is on its way.
	return nil, errTaken
}

// errTaken says a PEP 768 request was taken: wait for the agent as usual.
var errTaken = errors.New("remote exec request taken")
