package leak

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pyglass/pyglass"
)

// RunOptions control how a report runs in the target.
type RunOptions struct {
	// Timeout bounds the whole report, from attaching to the last byte of
	// its output (0: DefaultTimeout). On expiry the error is a
	// *pyglass.Error of kind ErrTimeout; the report may still be running
	// in the target and finishes there on its own.
	Timeout time.Duration
	// Progress, when set, receives short status lines while pyglass waits
	// to start the report (see pyglass.ExecOptions.Progress).
	Progress func(string)
}

// DefaultTimeout is the Timeout of a zero RunOptions.
const DefaultTimeout = 5 * time.Minute

// Run runs a report script (one of the Script functions' results) in p and
// returns what it printed. A script that raises is an error carrying the
// end of its traceback; a report that failed in a way it could describe
// prints a JSON error, which the Parse functions turn into a *ScriptError.
func Run(ctx context.Context, p *pyglass.Process, script []byte, opt RunOptions) (_ []byte, err error) {
	defer recoverReport(&err, "leak")
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	var out, errb strings.Builder
	res, err := p.Exec(ctx, script, pyglass.ExecOptions{
		Filename: "<pyglass-report>", Stdout: &out, Stderr: &errb,
		Timeout: opt.Timeout, Progress: opt.Progress,
	})
	if err != nil {
		return nil, err
	}
	if res.Raised {
		return nil, fmt.Errorf("the report failed inside the target: %s", lastLines(errb.String(), 3))
	}
	return []byte(out.String()), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// report runs script and parses its output with parse.
func report[T any](ctx context.Context, p *pyglass.Process, script []byte, run RunOptions, parse func([]byte) (T, error)) (T, error) {
	out, err := Run(ctx, p, script, run)
	if err != nil {
		var zero T
		return zero, err
	}
	return parse(out)
}

// Garbage reports the objects in the target's gc.garbage, by class.
func Garbage(ctx context.Context, p *pyglass.Process, opts GarbageOptions, run RunOptions) (*GarbageReport, error) {
	return report(ctx, p, GarbageScript(opts), run, ParseGarbage)
}

// Objects takes a census of the target's live objects by class.
func Objects(ctx context.Context, p *pyglass.Process, opts ObjectsOptions, run RunOptions) (*ObjectsReport, error) {
	return report(ctx, p, ObjectsScript(opts), run, ParseObjects)
}

// GC reports the state of the target's garbage collector.
func GC(ctx context.Context, p *pyglass.Process, opts GCOptions, run RunOptions) (*GCReport, error) {
	return report(ctx, p, GCScript(opts), run, ParseGC)
}

// Trace starts, stops or reports the target's allocation tracing.
func Trace(ctx context.Context, p *pyglass.Process, opts TraceOptions, run RunOptions) (*TraceReport, error) {
	return report(ctx, p, TraceScript(opts), run, ParseTrace)
}

// ObjectsGrowth takes two censuses of the target d apart and reports the classes
// that grew, as DiffOver does; opts.Top is ignored (every class is
// compared). progress, when not nil, receives the countdown.
func ObjectsGrowth(ctx context.Context, p *pyglass.Process, d time.Duration, opts ObjectsOptions, run RunOptions, progress io.Writer) (GrowthReport, error) {
	opts.Top = 0
	return DiffOver(ctx, d, func(ctx context.Context) (*ObjectsReport, error) {
		return Objects(ctx, p, opts, run)
	}, progress)
}
