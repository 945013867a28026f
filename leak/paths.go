package leak

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pyglass/pyglass"
)

//go:embed scripts/paths.py
var pathsPy string

// DefaultHolders is the number of holders PathsOptions asks for when
// Limit is 0.
const DefaultHolders = 5

// typeName is compiled when first used: not at every command's start.
var typeName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
})

// ValidTypeName tells whether name can be asked for in PathsOptions: a
// class name, qualified by its module or not ("app.cache.Session",
// "Session").
func ValidTypeName(name string) bool { return len(name) <= 500 && typeName().MatchString(name) }

// PathsOptions select the type whose holders the paths report looks for.
type PathsOptions struct {
	// Type is "module.QualName", or a name without a dot that matches
	// the last part of any class's qualified name.
	Type string
	// Limit is the number of holders to find (0: DefaultHolders).
	Limit int
}

// PathStep is one object of a reference path and the reference that
// leads on.
type PathStep struct {
	// Type is the object's class ("dict, 41210 items" for containers).
	Type string `json:"type"`
	// Edge names the reference to the next step: "[3]", "['key']",
	// ".__dict__", "<key>", "<member>", "?" (not named), or "" last.
	Edge string `json:"edge"`
}

// Holder is one root that keeps instances alive.
type Holder struct {
	// Root is the root's name: "module.NAME", "module.Class.attr",
	// "gc.garbage", or a variable of a function another thread runs:
	// `thread 4242 "worker": grow() local buf` (3.13+), `thread 4242
	// "worker": a local of grow()` (before 3.11: without its name).
	Root string `json:"root"`
	// Count is the number of instances reachable from the root.
	Count int64 `json:"count"`
	// Path is a shortest path from the root to one instance.
	Path []PathStep `json:"path"`
	// RetainedSize is what would be freed if the root let go: the
	// sys.getsizeof sizes of the objects reachable from it that nothing
	// else reaches without passing through it (sys.modules, the other
	// named roots: module globals, class attributes, gc.garbage, other
	// threads' variables except on 3.11 and 3.12). References from C code
	// are not seen: an upper bound.
	RetainedSize int64 `json:"retained_size"`
}

// PathsReport says who keeps the instances of a type alive.
type PathsReport struct {
	Python string `json:"python"`
	Type   string `json:"type"`
	// Total is the number of instances the walk found.
	Total   int64    `json:"total"`
	Holders []Holder `json:"holders"`
	// Unexplained is the number of instances no holder reported reaches
	// (held by other roots, by a thread's running function, or past the
	// Limit).
	Unexplained int64 `json:"unexplained"`
	// Complete is false when a walk or search stopped at its bound.
	Complete  bool     `json:"complete"`
	Notes     []string `json:"notes,omitempty"`
	ElapsedMS float64  `json:"elapsed_ms"`
	// LongestHoldMS is the longest stretch without a pause, measured as
	// ObjectsReport's.
	LongestHoldMS float64 `json:"longest_hold_ms"`
	// Headline is the report's first line: the holder that retains most,
	// "__main__.CACHE retains 12.1 MiB (holds 2,863 of the 2,863
	// CacheEntry instances, 100 %)"; "" without holders.
	Headline string `json:"headline"`
}

// Biggest is the holder that retains most, or nil.
func (r *PathsReport) Biggest() *Holder {
	var big *Holder
	for i := range r.Holders {
		if h := &r.Holders[i]; big == nil || h.RetainedSize > big.RetainedSize {
			big = h
		}
	}
	return big
}

// headline says it plainly: who retains most, and how much of the
// instances it holds.
func (r *PathsReport) headline() string {
	h := r.Biggest()
	if h == nil {
		return ""
	}
	pct := 0.0
	if r.Total > 0 {
		pct = 100 * float64(h.Count) / float64(r.Total)
	}
	return fmt.Sprintf("%s retains %s (holds %s of the %s %s instances, %.0f %%)",
		escapeText(h.Root), HumanSize(h.RetainedSize), thousands(h.Count), thousands(r.Total), escapeText(r.Type), pct)
}

// thousands writes n with commas: 41,210.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// PathsScript returns the Python source of the paths report. An invalid
// type name gives a script that reports a usage error.
func PathsScript(opts PathsOptions) []byte {
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultHolders
	}
	if !ValidTypeName(opts.Type) {
		return build("{'type': '', 'limit': 0}", "def _pg_main():\n    return {'error': 'invalid type name', 'kind': 'usage'}\n")
	}
	return build(fmt.Sprintf("{'type': '%s', 'limit': %d}", opts.Type, limit), objectsPy+"\n"+pathsPy)
}

// ParsePaths decodes the output of PathsScript; errors as ParseGarbage.
func ParsePaths(out []byte) (*PathsReport, error) {
	r := new(PathsReport)
	if err := parse(out, "paths", r); err != nil {
		return nil, err
	}
	r.Headline = r.headline()
	return r, nil
}

// Paths reports the roots that keep the instances of a type alive, with
// one shortest reference path from each.
func Paths(ctx context.Context, p *pyglass.Process, opts PathsOptions, run RunOptions) (*PathsReport, error) {
	return report(ctx, p, PathsScript(opts), run, ParsePaths)
}

// PathText renders a path as a user reads it: "app.CACHE (dict, 3 items)
// ['k1'] -> Session"; an instance's ".__dict__['x']" reads ".x".
func PathText(root string, steps []PathStep) string {
	if len(steps) == 0 {
		return escapeText(root)
	}
	if len(steps) == 1 {
		return escapeText(root) + " (" + escapeText(steps[0].Type) + ")"
	}
	var b strings.Builder
	b.WriteString(escapeText(root) + " (" + escapeText(steps[0].Type) + ")")
	for i, s := range steps[:len(steps)-1] {
		edge := s.Edge
		if edge == ".__dict__" && i+1 < len(steps)-1 {
			continue // folded into the next edge
		}
		if i > 0 && steps[i-1].Edge == ".__dict__" && strings.HasPrefix(edge, "['") && strings.HasSuffix(edge, "']") {
			edge = "." + edge[2:len(edge)-2]
		} else if i > 0 {
			b.WriteString(" (" + escapeText(s.Type) + ")")
		}
		b.WriteString(" " + escapeText(edge))
	}
	b.WriteString(" -> " + escapeText(steps[len(steps)-1].Type))
	return b.String()
}

// RenderPaths prints the paths report for people.
func RenderPaths(w io.Writer, r *PathsReport) error {
	var b strings.Builder
	if r.Headline != "" {
		b.WriteString(r.Headline + "\n")
	}
	fmt.Fprintf(&b, "%d instances of %s (Python %s; %.0f ms, longest GIL hold %.1f ms)\n",
		r.Total, escapeText(r.Type), r.Python, r.ElapsedMS, r.LongestHoldMS)
	if !r.Complete {
		b.WriteString("a walk or search stopped at its bound: counts are lower bounds\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if len(r.Holders) == 0 && r.Total > 0 {
		b.WriteString("no module global or class attribute reaches them\n")
	}
	for _, h := range r.Holders {
		pct := 0.0
		if r.Total > 0 {
			pct = 100 * float64(h.Count) / float64(r.Total)
		}
		fmt.Fprintf(&b, "\n%s reaches %d (%.0f %%) and retains %s\n  %s\n", escapeText(h.Root), h.Count, pct, HumanSize(h.RetainedSize), PathText(h.Root, h.Path))
	}
	if len(r.Holders) > 0 {
		b.WriteString("\nretains: what would be freed if the holder let go, as far as modules, class attributes,\ngc.garbage and other threads' variables reference it (C code is not seen: an upper bound)\n")
	}
	if r.Unexplained > 0 && len(r.Holders) > 0 {
		fmt.Fprintf(&b, "\n%d not reached by these holders\n", r.Unexplained)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// GrowthPathTypes is the number of growing classes GrowthWithPaths looks
// for holders of.
const GrowthPathTypes = 5

// GrowthPathsReport is a growth report with the holders of the classes
// that grew most.
type GrowthPathsReport struct {
	Growth GrowthReport   `json:"growth"`
	Paths  []*PathsReport `json:"paths"`
	// Headline is the first line: the holder that retains most among
	// the classes that grew ("__main__.CACHE retains 12.1 MiB (holds
	// 2,863 of the 2,863 __main__.CacheEntry instances, 100 %; the class
	// grew by 400 in 2s)"); "" without holders.
	Headline string `json:"headline"`
}

// GrowthWithPaths takes ObjectsGrowth over d, then a Paths report (limit
// holders each) for each of the first GrowthPathTypes classes that grew
// and are not builtins.
func GrowthWithPaths(ctx context.Context, p *pyglass.Process, d time.Duration, opts ObjectsOptions, limit int, run RunOptions, progress io.Writer) (*GrowthPathsReport, error) {
	g, err := ObjectsGrowth(ctx, p, d, opts, run, progress)
	if err != nil {
		return nil, err
	}
	r := &GrowthPathsReport{Growth: g, Paths: []*PathsReport{}}
	for _, t := range g.Types {
		if len(r.Paths) >= GrowthPathTypes {
			break
		}
		if !strings.Contains(t.Type, ".") || !ValidTypeName(t.Type) {
			continue // a builtin, or a class defined in a function
		}
		pr, err := Paths(ctx, p, PathsOptions{Type: t.Type, Limit: limit}, run)
		if err != nil {
			return nil, fmt.Errorf("paths of %s: %w", t.Type, err)
		}
		r.Paths = append(r.Paths, pr)
	}
	r.Headline = r.headline()
	return r, nil
}

func (r *GrowthPathsReport) headline() string {
	var top *PathsReport
	for _, p := range r.Paths {
		if h := p.Biggest(); h != nil && (top == nil || h.RetainedSize > top.Biggest().RetainedSize) {
			top = p
		}
	}
	if top == nil {
		return ""
	}
	line := top.headline()
	for _, g := range r.Growth.Types {
		if g.Type == top.Type {
			line = strings.TrimSuffix(line, ")") + fmt.Sprintf("; the class grew by %s", thousands(g.CountDelta))
			if r.Growth.Interval > 0 {
				line += " in " + time.Duration(r.Growth.Interval*float64(time.Second)).Round(time.Millisecond).String()
			}
			line += ")"
		}
	}
	return line
}

// RenderGrowthPaths prints the growth, then who holds each class.
func RenderGrowthPaths(w io.Writer, r *GrowthPathsReport, top int) error {
	if r.Headline != "" {
		if _, err := io.WriteString(w, r.Headline+"\n\n"); err != nil {
			return err
		}
	}
	if err := RenderGrowth(w, r.Growth, top); err != nil {
		return err
	}
	for _, p := range r.Paths {
		if _, err := io.WriteString(w, "\n"); err != nil {
			return err
		}
		if err := RenderPaths(w, p); err != nil {
			return err
		}
	}
	return nil
}
