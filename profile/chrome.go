package profile

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// WriteChrome writes Chrome's trace event format (JSON, read by
// chrome://tracing, Perfetto and speedscope): one track per thread, a
// slice per function call as the samples saw it (a call begins at the
// first sample it is on the stack of, ends at the first one it is not),
// with the file and line in its args. It needs the samples in time order:
// a Profile made without Timeline gets one slice per distinct stack,
// from the first to the last time it was seen.
func (p *Profile) WriteChrome(w io.Writer) error {
	bw := bufio.NewWriter(w)
	first := true
	emit := func(v any) error {
		if !first {
			bw.WriteString(",\n")
		}
		first = false
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = bw.Write(b)
		return err
	}
	bw.WriteString(`{"displayTimeUnit":"ms","otherData":{"exporter":"pyglass"},"traceEvents":[` + "\n")
	type ev struct {
		Name string         `json:"name"`
		Cat  string         `json:"cat,omitempty"`
		Ph   string         `json:"ph"`
		TS   float64        `json:"ts"`
		Dur  *float64       `json:"dur,omitempty"`
		PID  int            `json:"pid"`
		TID  int            `json:"tid"`
		Args map[string]any `json:"args,omitempty"`
	}
	for _, th := range p.threads {
		name := th.Name
		if name == "" {
			name = fmt.Sprintf("thread %d", th.TID)
		}
		if err := emit(ev{Name: "thread_name", Ph: "M", PID: th.PID, TID: th.TID, Args: map[string]any{"name": name}}); err != nil {
			return err
		}
	}
	us := func(d int64) float64 { return float64(d) / 1e3 }
	frameArgs := func(fi int32) map[string]any {
		f := p.frames[fi]
		return map[string]any{"file": f.File, "line": f.Line}
	}
	if !p.Timeline {
		// No time order: a slice per stack over the time it was seen.
		for _, s := range p.stacks {
			th := p.threads[s.Thread]
			for _, fi := range s.Frames {
				d := us(int64(s.Last-s.First)) + us(int64(p.period()))
				if err := emit(ev{Name: p.frames[fi].Function, Cat: "python", Ph: "X", TS: us(int64(s.First)), Dur: &d, PID: th.PID, TID: th.TID, Args: frameArgs(fi)}); err != nil {
					return err
				}
			}
		}
	} else {
		// Per thread, in time order: the frames that differ from the
		// previous sample's end, the new ones begin.
		byThread := map[int32][]event{}
		for _, e := range p.timeline {
			t := p.stacks[e.stack].Thread
			byThread[t] = append(byThread[t], e)
		}
		tis := make([]int32, 0, len(byThread))
		for ti := range byThread {
			tis = append(tis, ti)
		}
		sort.Slice(tis, func(i, j int) bool { return tis[i] < tis[j] })
		for _, ti := range tis {
			th := p.threads[ti]
			var open []int32
			var last int64
			for _, e := range byThread[ti] {
				cur := p.stacks[e.stack].Frames
				common := 0
				for common < len(open) && common < len(cur) && open[common] == cur[common] {
					common++
				}
				for i := len(open) - 1; i >= common; i-- {
					if err := emit(ev{Name: p.frames[open[i]].Function, Ph: "E", TS: us(int64(e.at)), PID: th.PID, TID: th.TID}); err != nil {
						return err
					}
				}
				for _, fi := range cur[common:] {
					if err := emit(ev{Name: p.frames[fi].Function, Cat: "python", Ph: "B", TS: us(int64(e.at)), PID: th.PID, TID: th.TID, Args: frameArgs(fi)}); err != nil {
						return err
					}
				}
				open = append(open[:0], cur...)
				last = int64(e.at)
			}
			end := last + int64(p.period())
			for i := len(open) - 1; i >= 0; i-- {
				if err := emit(ev{Name: p.frames[open[i]].Function, Ph: "E", TS: us(end), PID: th.PID, TID: th.TID}); err != nil {
					return err
				}
			}
		}
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}
