// Package profile builds a sampling profile of Python stacks and writes it
// in the formats profilers and their viewers read: pprof (Grafana
// Pyroscope, Parca, `go tool pprof`), speedscope JSON, collapsed stacks
// (flamegraph.pl, inferno), Chrome's trace event JSON and a self-contained
// HTML page with an interactive flame graph (speedscope's viewer, when the
// build has it: see Viewer).
//
// A Profile is filled with Add, one call per thread stack sampled; it
// keeps each distinct stack once with its count, so its size depends on
// the program's code paths, not on the duration.
package profile

import (
	"encoding/binary"
	"slices"
	"time"
)

var slicesEqual = slices.Equal[[]Frame]

// Frame is one Python frame: the function's qualified name, its file and
// the line being run (0 when unknown).
type Frame struct {
	Function string
	File     string
	Line     int
}

// Thread says whose stack a sample is.
type Thread struct {
	PID  int
	TID  int
	Name string
}

// Profile is a set of sampled stacks with their counts.
type Profile struct {
	// Start is when sampling began; Duration how long it ran.
	Start    time.Time
	Duration time.Duration
	// Rate is the requested sampling rate, in samples per second.
	Rate float64
	// Name titles the profile in the formats that show one (speedscope,
	// HTML); "pyglass profile" when empty.
	Name string
	// PerThread keeps one tree per thread in the outputs (else threads
	// are merged).
	PerThread bool
	// Timeline keeps every stack in time order, for the formats that show
	// time (Chrome's trace events), up to MaxTimeline; TimelineCut says the
	// bound was reached.
	Timeline    bool
	TimelineCut bool
	timeline    []event

	frames   []Frame
	frameIdx map[Frame]int32
	threads  []Thread
	thIdx    map[Thread]int32
	stacks   []*Stack
	stackIdx map[string]int32
	key      []byte
	ids      []int32
	total    int64
	// last is each thread's last stack (by thread index) and its index
	// in stacks: a thread sampled again in the same place (an idle one,
	// always) costs no lookup of its frames.
	last []lastStack
}

type lastStack struct {
	frames []Frame
	si     int32
}

// smallThreads is the number of threads up to which Add finds a thread's
// index by a scan rather than a map lookup (which hashes its name).
const smallThreads = 16

// Stack is one distinct stack of one thread and how often it was seen.
type Stack struct {
	Thread int32
	// Frames are indexes into Frames(), outermost first.
	Frames []int32
	Count  int64
	// First and Last are the sample times (offsets from Start) the stack
	// was first and last seen.
	First, Last time.Duration
}

// New returns an empty profile.
func New(start time.Time, rate float64) *Profile {
	return &Profile{Start: start, Rate: rate, frameIdx: map[Frame]int32{}, thIdx: map[Thread]int32{}, stackIdx: map[string]int32{}}
}

// Add records one stack of th, frames outermost first, seen at time at.
// It does not keep the slice frames.
func (p *Profile) Add(th Thread, frames []Frame, at time.Time) {
	ti, ok := int32(-1), false
	if len(p.threads) <= smallThreads {
		for i := range p.threads {
			if p.threads[i] == th {
				ti, ok = int32(i), true
				break
			}
		}
	} else {
		ti, ok = p.thIdx[th]
	}
	if !ok {
		ti = int32(len(p.threads))
		p.threads = append(p.threads, th)
		p.thIdx[th] = ti
		p.last = append(p.last, lastStack{si: -1})
	}
	off := at.Sub(p.Start)
	p.total++
	if l := &p.last[ti]; l.si >= 0 && slicesEqual(l.frames, frames) {
		p.count(l.si, off)
		return
	}
	p.ids = p.ids[:0]
	for _, f := range frames {
		fi, ok := p.frameIdx[f]
		if !ok {
			fi = int32(len(p.frames))
			p.frames = append(p.frames, f)
			p.frameIdx[f] = fi
		}
		p.ids = append(p.ids, fi)
	}
	p.key = binary.LittleEndian.AppendUint32(p.key[:0], uint32(ti))
	for _, id := range p.ids {
		p.key = binary.LittleEndian.AppendUint32(p.key, uint32(id))
	}
	si, ok := p.stackIdx[string(p.key)]
	if !ok {
		si = int32(len(p.stacks))
		p.stackIdx[string(p.key)] = si
		p.stacks = append(p.stacks, &Stack{Thread: ti, Frames: append([]int32(nil), p.ids...), First: off})
	}
	l := &p.last[ti]
	l.frames, l.si = append(l.frames[:0], frames...), si
	p.count(si, off)
}

// count counts one more sample of stack si at off.
func (p *Profile) count(si int32, off time.Duration) {
	s := p.stacks[si]
	s.Count++
	s.Last = off
	if p.Timeline {
		if len(p.timeline) < MaxTimeline {
			p.timeline = append(p.timeline, event{at: off, stack: si})
		} else {
			p.TimelineCut = true
		}
	}
}

// MaxTimeline bounds the samples a Profile keeps in time order (12 bytes
// each): 10 million, 15 minutes of 10 threads at 1 kHz.
const MaxTimeline = 10_000_000

// event is one thread stack in time order.
type event struct {
	at    time.Duration
	stack int32
}

// Frames returns the distinct frames, indexed by Stack.Frames.
func (p *Profile) Frames() []Frame { return p.frames }

// Threads returns the threads, indexed by Stack.Thread.
func (p *Profile) Threads() []Thread { return p.threads }

// Stacks returns the distinct stacks.
func (p *Profile) Stacks() []*Stack { return p.stacks }

// Total returns the number of thread stacks added.
func (p *Profile) Total() int64 { return p.total }

// FuncStat is one function's share of a profile.
type FuncStat struct {
	Function string
	File     string
	// Own counts the stacks where the function is the innermost frame;
	// Total those where it appears at all (recursion counted once).
	Own, Total int64
}

// Top returns the functions sorted by own count (then total), at most n
// (all when n <= 0).
func (p *Profile) Top(n int) []FuncStat {
	type fk struct{ fn, file string }
	stats := map[fk]*FuncStat{}
	seen := map[fk]bool{}
	for _, s := range p.stacks {
		clear(seen)
		for i, fi := range s.Frames {
			f := p.frames[fi]
			k := fk{f.Function, f.File}
			st := stats[k]
			if st == nil {
				st = &FuncStat{Function: f.Function, File: f.File}
				stats[k] = st
			}
			if !seen[k] {
				st.Total += s.Count
				seen[k] = true
			}
			if i == len(s.Frames)-1 {
				st.Own += s.Count
			}
		}
	}
	out := make([]FuncStat, 0, len(stats))
	for _, st := range stats {
		out = append(out, *st)
	}
	sortStats(out, ByOwn)
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
