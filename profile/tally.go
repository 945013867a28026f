package profile

import "sort"

// Tally counts, per function, the stacks it is the innermost frame of
// (own) and the stacks it appears in (total), for live views such as
// `pyglass top`: unlike Profile it keeps no stacks, and Reset starts it
// over.
type Tally struct {
	stacks int64
	gil    int64
	funcs  map[funcKey]*FuncStat
	seen   map[funcKey]bool
}

type funcKey struct{ fn, file string }

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{funcs: map[funcKey]*FuncStat{}, seen: map[funcKey]bool{}}
}

// Add counts one thread stack, frames outermost first; holdsGIL says
// whether the thread held the GIL.
func (t *Tally) Add(frames []Frame, holdsGIL bool) {
	t.stacks++
	if holdsGIL {
		t.gil++
	}
	clear(t.seen)
	for i, f := range frames {
		k := funcKey{f.Function, f.File}
		st := t.funcs[k]
		if st == nil {
			st = &FuncStat{Function: f.Function, File: f.File}
			t.funcs[k] = st
		}
		if !t.seen[k] {
			st.Total++
			t.seen[k] = true
		}
		if i == len(frames)-1 {
			st.Own++
		}
	}
}

// Stacks returns the number of stacks counted.
func (t *Tally) Stacks() int64 { return t.stacks }

// GIL returns the number of stacks counted whose thread held the GIL.
func (t *Tally) GIL() int64 { return t.gil }

// Reset forgets everything counted.
func (t *Tally) Reset() {
	t.stacks, t.gil = 0, 0
	clear(t.funcs)
}

// SortBy says how Top orders functions.
type SortBy int

// Orders for Top.
const (
	ByOwn SortBy = iota
	ByTotal
	ByName
)

// Top returns at most n functions (all when n <= 0) in the order by.
func (t *Tally) Top(n int, by SortBy) []FuncStat {
	out := make([]FuncStat, 0, len(t.funcs))
	for _, st := range t.funcs {
		out = append(out, *st)
	}
	sortStats(out, by)
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func sortStats(out []FuncStat, by SortBy) {
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch by {
		case ByTotal:
			if a.Total != b.Total {
				return a.Total > b.Total
			}
		case ByName:
			if a.Function != b.Function {
				return a.Function < b.Function
			}
			return a.File < b.File
		}
		if a.Own != b.Own {
			return a.Own > b.Own
		}
		if a.Total != b.Total {
			return a.Total > b.Total
		}
		if a.Function != b.Function {
			return a.Function < b.Function
		}
		return a.File < b.File
	})
}
