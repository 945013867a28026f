package leak

import (
	_ "embed"
	"fmt"
	"strings"
)

var (
	//go:embed scripts/common.py
	commonPy string
	//go:embed scripts/footer.py
	footerPy string
	//go:embed scripts/garbage.py
	garbagePy string
	//go:embed scripts/objects.py
	objectsPy string
	//go:embed scripts/gc.py
	gcPy string
	//go:embed scripts/trace.py
	tracePy string
)

// DefaultExamples is the number of example reprs per type that
// GarbageOptions asks for when Limit is 0.
const DefaultExamples = 3

// MaxTraceFrames is the largest --frames value TraceScript accepts.
const MaxTraceFrames = 1000

// GarbageOptions selects what the garbage report does before reporting.
type GarbageOptions struct {
	// Collect runs gc.collect() first.
	Collect bool
	// SaveAll sets gc.DEBUG_SAVEALL for one collection, reports the
	// objects it saved, then takes exactly those out of gc.garbage again,
	// restores the flags and collects so that they are freed.
	SaveAll bool
	// Limit is the number of example reprs per type (0: DefaultExamples,
	// negative: none).
	Limit int
}

// ObjectsOptions selects the rows of the objects report.
type ObjectsOptions struct {
	// Top keeps the N most numerous types; 0 keeps every type (what Diff
	// needs to see every type that grew).
	Top int
	// All counts every object the collector tracks with gc.get_objects:
	// exact, but one GIL hold proportional to the heap. Without it the
	// census walks from the program's roots in small steps.
	All bool
}

// TraceAction is what the trace report does to tracemalloc.
type TraceAction string

// The trace actions.
const (
	TraceStart  TraceAction = "start"
	TraceStop   TraceAction = "stop"
	TraceStatus TraceAction = "status"
)

// TraceOptions selects the trace action.
type TraceOptions struct {
	Action TraceAction
	// Frames is the traceback depth tracemalloc records on start (0: 1).
	Frames int
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// build returns a report: the line binding _pg_opts, then a loop that
// compiles and runs common.py, body and footer.py in pieces of about
// chunkSize bytes, pausing 0.1 ms between two (once common.py has defined
// _pg_sleep). Compiling the whole report in one call held the target's GIL
// for 10-60 ms on a loaded machine (paths.py with what it is appended to is
// 45 KB), longer than any step of the walk; a piece compiles in 1-3 ms.
// The pieces are string literals (compiling them is a scan: about 1 ms for
// all), each cut before a top-level statement that follows two blank lines
// and padded with newlines so that tracebacks give the right line numbers.
// The footer, the last piece, deletes every _pg_ name, the loop's included.
func build(opts, body string) []byte {
	var b strings.Builder
	b.Grow(len(opts) + len(commonPy) + len(body) + len(footerPy) + 1024)
	b.WriteString("_pg_opts = ")
	b.WriteString(opts)
	b.WriteString("\nfor _pg_part in (\n")
	line := 1
	for _, part := range chunks(commonPy+"\n"+body+"\n"+footerPy, chunkSize) {
		fmt.Fprintf(&b, "        (%d, ", line-1)
		pyQuote(&b, part)
		b.WriteString("),\n")
		line += strings.Count(part, "\n")
	}
	b.WriteString(`):
    exec(compile('\n' * _pg_part[0] + _pg_part[1], '<pyglass-report>', 'exec'), globals())
    if globals().get('_pg_sleep') is not None:
        _pg_sleep(0.0001)
`)
	return []byte(b.String())
}

// chunkSize is the size in bytes a piece of a report grows to before the
// next is started (a top-level function larger than it is one piece).
const chunkSize = 4096

// chunks cuts src before every top-level statement that follows two
// blank lines (the start of a line outside a multi-line string, in the
// scripts' style), joining consecutive pieces up to size bytes. The
// pieces, concatenated, are src; a piece after the first starts at the
// line after the previous one's last newline.
func chunks(src string, size int) []string {
	var out []string
	start, cut := 0, 0
	for i := 0; ; {
		j := strings.Index(src[i:], "\n\n\n")
		next := len(src)
		if j >= 0 {
			next = i + j + 3
		}
		if j >= 0 && (next == len(src) || src[next] == ' ' || src[next] == '\t' || src[next] == '\n') {
			i = next - 2 // blank lines inside a function, or more than two
			continue
		}
		if next-start > size && cut > start {
			out = append(out, src[start:cut])
			start = cut
		}
		cut = next
		if j < 0 {
			break
		}
		i = next
	}
	return append(out, src[start:])
}

// pyQuote writes s as a Python string literal (2.7 and 3.x): quotes,
// backslashes and control characters escaped, other bytes (the scripts'
// UTF-8, if any) as they are, so the literal decodes like the source did.
func pyQuote(b *strings.Builder, s string) {
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString("\\n")
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
}

// GarbageScript returns the Python source of the garbage report.
func GarbageScript(opts GarbageOptions) []byte {
	limit := opts.Limit
	if limit == 0 {
		limit = DefaultExamples
	}
	if limit < 0 {
		limit = 0
	}
	return build(fmt.Sprintf("{'collect': %s, 'saveall': %s, 'limit': %d}",
		pyBool(opts.Collect), pyBool(opts.SaveAll), limit), garbagePy)
}

// ObjectsScript returns the Python source of the objects census.
func ObjectsScript(opts ObjectsOptions) []byte {
	top := opts.Top
	if top < 0 {
		top = 0
	}
	return build(fmt.Sprintf("{'top': %d, 'all': %s}", top, pyBool(opts.All)), objectsPy)
}

// GCOptions select what the gc report does first.
type GCOptions struct {
	// Collect runs a full collection before reading the state.
	Collect bool
}

// GCScript returns the Python source of the gc report.
func GCScript(opts GCOptions) []byte {
	return build(fmt.Sprintf("{'collect': %s}", pyBool(opts.Collect)), gcPy)
}

// TraceScript returns the Python source of the trace report. An unknown
// action or a Frames value outside 0..MaxTraceFrames gives a script that
// reports a usage error.
func TraceScript(opts TraceOptions) []byte {
	action := opts.Action
	switch action {
	case TraceStart, TraceStop, TraceStatus:
	default:
		action = "invalid"
	}
	frames, ok := traceFrames(opts.Frames)
	if !ok {
		action = "invalid"
	}
	return build(fmt.Sprintf("{'action': '%s', 'frames': %d}", action, frames), tracePy)
}

// traceFrames is the traceback depth a script asks for: 1 for 0, and
// false (with 1) outside 0..MaxTraceFrames.
func traceFrames(frames int) (int, bool) {
	if frames == 0 {
		return 1, true
	}
	if frames < 0 || frames > MaxTraceFrames {
		return 1, false
	}
	return frames, true
}
