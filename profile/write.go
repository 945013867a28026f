package profile

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Format is an output format.
type Format string

// The formats Write knows.
const (
	Pprof      Format = "pprof"      // gzipped protobuf, .pb.gz
	Speedscope Format = "speedscope" // speedscope's JSON file format, .json
	Collapsed  Format = "collapsed"  // one "a;b;c count" line per stack, .txt
	Chrome     Format = "chrome"     // Chrome's trace event JSON, .trace.json
	HTML       Format = "html"       // a self-contained page with speedscope's flame graph, .html
)

// Formats lists the formats.
var Formats = []Format{Speedscope, Pprof, Collapsed, Chrome, HTML}

// DefaultFormat is HTML when the viewer's files are built in, else
// Speedscope. It only looks for them: the page is built (a few tens of
// milliseconds of regular expressions over the bundle) when an HTML
// profile is written, and a bundle that cannot make one fails there, with
// ViewerErr.
func DefaultFormat() Format {
	if viewerBuiltIn() {
		return HTML
	}
	return Speedscope
}

// Ext returns the file name extension of f.
func (f Format) Ext() string {
	switch f {
	case Pprof:
		return ".pb.gz"
	case Collapsed:
		return ".txt"
	case Chrome:
		return ".trace.json"
	case HTML:
		return ".html"
	default:
		return ".json"
	}
}

// ParseFormat returns the format named s.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown format %q (known: %s)", s, strings.Join(names, ", "))
}

// FormatFromPath guesses the format from a file name's extension.
func FormatFromPath(path string) (Format, bool) {
	switch {
	case strings.HasSuffix(path, ".pb.gz"), strings.HasSuffix(path, ".pprof"), strings.HasSuffix(path, ".pb"):
		return Pprof, true
	case strings.HasSuffix(path, ".txt"), strings.HasSuffix(path, ".collapsed"), strings.HasSuffix(path, ".folded"):
		return Collapsed, true
	case strings.HasSuffix(path, ".trace.json"), strings.HasSuffix(path, ".trace"):
		return Chrome, true
	case strings.HasSuffix(path, ".html"), strings.HasSuffix(path, ".htm"):
		return HTML, true
	case filepath.Ext(path) == ".json", strings.HasSuffix(path, ".speedscope.json"):
		return Speedscope, true
	}
	return "", false
}

// Write writes p to w in format f.
func (p *Profile) Write(w io.Writer, f Format) error {
	switch f {
	case Pprof:
		return p.WritePprof(w)
	case Collapsed:
		return p.WriteCollapsed(w)
	case Speedscope:
		return p.WriteSpeedscope(w)
	case Chrome:
		return p.WriteChrome(w)
	case HTML:
		return p.WriteHTML(w)
	}
	return fmt.Errorf("unknown format %q", f)
}

// frameName is how a frame is named in the text formats:
// "function (file:line)".
func (fr Frame) name() string {
	if fr.Line > 0 {
		return fr.Function + " (" + fr.File + ":" + strconv.Itoa(fr.Line) + ")"
	}
	return fr.Function + " (" + fr.File + ")"
}

// threadName labels a thread's tree: "thread 12 "worker"" or with the pid.
func (p *Profile) threadName(ti int32) string {
	th := p.threads[ti]
	s := "thread " + strconv.Itoa(th.TID)
	if th.Name != "" {
		s += " " + strconv.Quote(th.Name)
	}
	if p.multiPID() {
		s = "process " + strconv.Itoa(th.PID) + " " + s
	}
	return s
}

func (p *Profile) multiPID() bool {
	for _, th := range p.threads {
		if th.PID != p.threads[0].PID {
			return true
		}
	}
	return false
}

// WriteCollapsed writes one line per distinct stack, "frame;frame;... N",
// outermost first, as flamegraph.pl and inferno read them. With
// PerThread (or several processes) each stack starts with its thread.
func (p *Profile) WriteCollapsed(w io.Writer) error {
	bw := bufio.NewWriter(w)
	counts := map[string]int64{}
	var b strings.Builder
	for _, s := range p.stacks {
		b.Reset()
		if p.PerThread || p.multiPID() {
			if p.PerThread {
				b.WriteString(sanitizeCollapsed(p.threadName(s.Thread)))
			} else {
				b.WriteString("process " + strconv.Itoa(p.threads[s.Thread].PID))
			}
		}
		for _, fi := range s.Frames {
			if b.Len() > 0 {
				b.WriteByte(';')
			}
			b.WriteString(sanitizeCollapsed(p.frames[fi].name()))
		}
		if b.Len() == 0 {
			b.WriteString("<no Python frames>")
		}
		counts[b.String()] += s.Count
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(bw, "%s %d\n", k, counts[k])
	}
	return bw.Flush()
}

// sanitizeCollapsed keeps a name on one line and free of the separator.
func sanitizeCollapsed(s string) string {
	return strings.NewReplacer(";", ":", "\n", " ", "\r", " ").Replace(s)
}

// period is the sampling interval.
func (p *Profile) period() time.Duration {
	if p.Rate <= 0 {
		return 10 * time.Millisecond
	}
	return time.Duration(float64(time.Second) / p.Rate)
}

// WritePprof writes a gzipped pprof protobuf: sample types "samples"
// (count) and "wall" (nanoseconds, count × the sampling period), one
// location per distinct frame (function, file, line), and labels "thread"
// (name), "thread_id" and "pid" on every sample.
func (p *Profile) WritePprof(w io.Writer) error {
	per := int64(p.period())
	e := newPprofEncoder()
	e.valueType(pbProfileSampleType, "samples", "count")
	e.valueType(pbProfileSampleType, "wall", "nanoseconds")
	e.int64(pbProfileDefaultSampleType, e.str("wall"))
	e.valueType(pbProfilePeriodType, "wall", "nanoseconds")
	e.int64(pbProfilePeriod, per)
	e.int64(pbProfileTimeNanos, p.Start.UnixNano())
	e.int64(pbProfileDurationNanos, int64(p.Duration))
	funcs := map[[2]string]int64{}
	for i, fr := range p.frames {
		k := [2]string{fr.Function, fr.File}
		fn := funcs[k]
		if fn == 0 {
			fn = int64(len(funcs) + 1)
			funcs[k] = fn
			e.function(fn, fr.Function, fr.File)
		}
		e.location(int64(i+1), fn, int64(fr.Line))
	}
	var locs []int64
	labels := make([]pprofLabel, 0, 3)
	for _, s := range p.stacks {
		th := p.threads[s.Thread]
		labels = labels[:0]
		if th.Name != "" {
			labels = append(labels, pprofLabel{key: "thread", str: th.Name})
		}
		labels = append(labels, pprofLabel{key: "pid", num: int64(th.PID)}, pprofLabel{key: "thread_id", num: int64(th.TID)})
		// pprof lists locations innermost first.
		locs = locs[:0]
		for i := len(s.Frames) - 1; i >= 0; i-- {
			locs = append(locs, int64(s.Frames[i])+1)
		}
		e.sample(locs, []int64{s.Count, s.Count * per}, labels)
	}
	return e.finish(w)
}

// speedscope's file format (https://www.speedscope.app/file-format-schema.json).
type ssFile struct {
	Schema             string      `json:"$schema"`
	Shared             ssShared    `json:"shared"`
	Profiles           []ssProfile `json:"profiles"`
	Name               string      `json:"name,omitempty"`
	ActiveProfileIndex int         `json:"activeProfileIndex"`
	Exporter           string      `json:"exporter,omitempty"`
}

type ssShared struct {
	Frames []ssFrame `json:"frames"`
}

type ssFrame struct {
	Name string `json:"name"`
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

type ssProfile struct {
	Type       string    `json:"type"`
	Name       string    `json:"name"`
	Unit       string    `json:"unit"`
	StartValue float64   `json:"startValue"`
	EndValue   float64   `json:"endValue"`
	Samples    [][]int32 `json:"samples"`
	Weights    []float64 `json:"weights"`
}

// WriteSpeedscope writes speedscope's JSON format: one "sampled" profile
// per thread with PerThread, else one for all threads; weights are
// seconds (count × the sampling period).
func (p *Profile) WriteSpeedscope(w io.Writer) error {
	f := ssFile{
		Schema:   "https://www.speedscope.app/file-format-schema.json",
		Name:     p.Name,
		Exporter: "pyglass",
		Shared:   ssShared{Frames: make([]ssFrame, len(p.frames))},
	}
	if f.Name == "" {
		f.Name = "pyglass profile"
	}
	for i, fr := range p.frames {
		f.Shared.Frames[i] = ssFrame{Name: fr.Function, File: fr.File, Line: fr.Line}
	}
	per := p.period().Seconds()
	byProfile := map[int32]*ssProfile{}
	var order []int32
	for _, s := range p.stacks {
		key := int32(0)
		if p.PerThread {
			key = s.Thread
		}
		sp := byProfile[key]
		if sp == nil {
			name := "all threads"
			if p.PerThread {
				name = p.threadName(s.Thread)
			}
			sp = &ssProfile{Type: "sampled", Name: name, Unit: "seconds", Samples: [][]int32{}, Weights: []float64{}}
			byProfile[key] = sp
			order = append(order, key)
		}
		sp.Samples = append(sp.Samples, s.Frames)
		wt := float64(s.Count) * per
		sp.Weights = append(sp.Weights, wt)
		sp.EndValue += wt
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	for _, k := range order {
		f.Profiles = append(f.Profiles, *byProfile[k])
	}
	if f.Profiles == nil {
		f.Profiles = []ssProfile{{Type: "sampled", Name: "all threads", Unit: "seconds", Samples: [][]int32{}, Weights: []float64{}}}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(f)
}
