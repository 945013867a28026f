package cpython_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// TestGILLocations: for each way a version keeps its GIL, FindGIL's
// holder words and GILRange's memory (where a waiter sleeps), both from
// the one switch: 3.12+ through interp->ceval.gil, 3.7–3.11 in
// _PyRuntime, 3.6 from its static gil_cond/gil_mutex, 2.7 from the
// semaphore interpreter_lock points to; the last holder and switch
// count from 3.6 (none in 2.7); and zeros with an error when the GIL
// cannot be found.
func TestGILLocations(t *testing.T) {
	const (
		interp  = 0x10000
		gil     = 0x20000
		runtime = 0x30000
		lockPtr = 0x40000
		sem     = 0x50000
	)
	syms := map[string]uint64{"gil_cond": 0x61000, "gil_mutex": 0x60f00, "_PyThreadState_Current": 0x62000, "interpreter_lock": lockPtr,
		"gil_last_holder": 0x61100, "gil_switch_number": 0x61200}
	for _, v := range [][2]int{{2, 7}, {3, 6}, {3, 7}, {3, 9}, {3, 11}, {3, 12}, {3, 13}, {3, 14}, {3, 15}} {
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) {
			l, err := layout.For(v[0], v[1])
			if err != nil {
				t.Fatal(err)
			}
			img := cpython.Image{Major: v[0], Minor: v[1], PyRuntime: [2]uint64{runtime, runtime + 0x1000}}
			img.Symbol = func(name string) (uint64, bool) {
				a, ok := syms[name]
				if v[0] == 2 && name != "interpreter_lock" && name != "_PyThreadState_Current" {
					return 0, false // 2.7 has no gil_cond
				}
				return a, ok
			}
			var m memory.Fake
			page := make([]byte, 0x1000)
			if l.InterpCevalGil >= 0 {
				binary.LittleEndian.PutUint64(page[l.InterpCevalGil:], gil)
			}
			m.Map(interp, page)
			ptr := make([]byte, 8)
			binary.LittleEndian.PutUint64(ptr, sem)
			m.Map(lockPtr, ptr)

			var wantWords cpython.GILWords
			var wantRange [2]uint64
			switch {
			case v[0] == 3 && v[1] >= 12:
				wantWords = cpython.GILWords{Holder: gil + uint64(l.GilLastHolder), Locked: gil + uint64(l.GilLocked),
					LastHolder: gil + 8, Switch: gil + 24}
				wantRange = [2]uint64{gil, gil + 256}
			case v[0] == 3 && v[1] >= 7:
				wantWords = cpython.GILWords{Holder: runtime + uint64(l.RuntimeGilstateTstateCurrent), Locked: runtime + uint64(l.RuntimeCevalGilLocked)}
				base := runtime + uint64(l.RuntimeCevalGilLocked) - uint64(l.GilLocked)
				wantWords.LastHolder, wantWords.Switch = base+8, base+24
				wantRange = [2]uint64{base, base + 256}
			case v[0] == 3:
				wantWords = cpython.GILWords{Holder: syms["_PyThreadState_Current"], LastHolder: syms["gil_last_holder"], Switch: syms["gil_switch_number"]}
				wantRange = [2]uint64{syms["gil_mutex"], syms["gil_mutex"] + 160}
			default:
				wantWords = cpython.GILWords{Holder: syms["_PyThreadState_Current"]}
				wantRange = [2]uint64{sem, sem + 64}
			}
			g, err := cpython.FindGIL(&m, img, l, interp)
			if err != nil || g != wantWords {
				t.Errorf("FindGIL = %+v, %v; want %+v", g, err, wantWords)
			}
			if r := cpython.GILRange(&m, img, l, interp); r != wantRange {
				t.Errorf("GILRange = %#x, want %#x", r, wantRange)
			}
			// Nothing to find it with: no memory, no symbols, no runtime.
			bare := cpython.Image{Major: v[0], Minor: v[1]}
			if r := cpython.GILRange(&memory.Fake{}, bare, l, interp); r != [2]uint64{} {
				t.Errorf("GILRange with nothing known = %#x, want zeros", r)
			}
			if _, err := cpython.FindGIL(&memory.Fake{}, bare, l, interp); err == nil {
				t.Errorf("FindGIL with nothing known: no error")
			}
		})
	}
}

// TestGILWordsRead: the words are read in as few segments as their
// places allow (3.12+: last holder, locked and switch count as one), and
// decoded from them: the holder only while locked, the last holder and
// the switch count whatever locked says; a count that cannot be read
// leaves HasSwitch unset, not the holder unknown.
func TestGILWordsRead(t *testing.T) {
	const gil, rt, far = 0x20000, 0x30000, 0x90000
	word := func(m *memory.Fake, a, v uint64) {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, v)
		m.Map(a, b)
	}
	cases := []struct {
		name   string
		g      cpython.GILWords
		segs   int
		locked bool
		noSw   bool // the switch count's memory is missing
	}{
		{"3.12+", cpython.GILWords{Holder: gil + 8, Locked: gil + 16, LastHolder: gil + 8, Switch: gil + 24}, 1, true, false},
		{"3.12+ released", cpython.GILWords{Holder: gil + 8, Locked: gil + 16, LastHolder: gil + 8, Switch: gil + 24}, 1, false, false},
		{"3.7-3.11", cpython.GILWords{Holder: rt, Locked: gil + 16, LastHolder: gil + 8, Switch: gil + 24}, 2, true, false},
		{"3.6", cpython.GILWords{Holder: rt, LastHolder: gil, Switch: far}, 3, true, false},
		{"2.7", cpython.GILWords{Holder: rt}, 1, true, false},
		{"count unreadable", cpython.GILWords{Holder: rt, LastHolder: gil, Switch: far}, 3, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m memory.Fake
			m.Map(gil, make([]byte, 64))
			locked := uint64(0)
			if c.locked {
				locked = 1
			}
			word(&m, gil+16, locked)
			if c.g.Holder != gil+8 {
				word(&m, c.g.Holder, 0x7777)
			}
			if c.g.LastHolder != 0 {
				word(&m, c.g.LastHolder, 0x7777)
			}
			if c.g.Switch != 0 && !c.noSw {
				word(&m, c.g.Switch, 42)
			}
			var buf cpython.GILBuf
			segs := c.g.Segments(nil, &buf)
			if len(segs) != c.segs {
				t.Errorf("%d segments, want %d: %+v", len(segs), c.segs, segs)
			}
			memory.ReadV(&m, segs)
			st, err := c.g.Read(segs)
			if err != nil {
				t.Fatal(err)
			}
			wantHolder := uint64(0x7777)
			if c.g.Locked != 0 && !c.locked {
				wantHolder = 0
			}
			if st.Holder != wantHolder {
				t.Errorf("holder %#x, want %#x", st.Holder, wantHolder)
			}
			wantSwitch := c.g.Switch != 0 && !c.noSw
			if st.HasSwitch != wantSwitch || wantSwitch && (st.Switch != 42 || st.LastHolder != 0x7777) {
				t.Errorf("state %+v, want the count 42 and the last holder 0x7777: %v", st, wantSwitch)
			}
		})
	}
}
