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
// semaphore interpreter_lock points to; and zeros with an error when the
// GIL cannot be found.
func TestGILLocations(t *testing.T) {
	const (
		interp  = 0x10000
		gil     = 0x20000
		runtime = 0x30000
		lockPtr = 0x40000
		sem     = 0x50000
	)
	syms := map[string]uint64{"gil_cond": 0x61000, "gil_mutex": 0x60f00, "_PyThreadState_Current": 0x62000, "interpreter_lock": lockPtr}
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
				wantWords = cpython.GILWords{Holder: gil + uint64(l.GilLastHolder), Locked: gil + uint64(l.GilLocked)}
				wantRange = [2]uint64{gil, gil + 256}
			case v[0] == 3 && v[1] >= 7:
				wantWords = cpython.GILWords{Holder: runtime + uint64(l.RuntimeGilstateTstateCurrent), Locked: runtime + uint64(l.RuntimeCevalGilLocked)}
				base := runtime + uint64(l.RuntimeCevalGilLocked) - uint64(l.GilLocked)
				wantRange = [2]uint64{base, base + 256}
			case v[0] == 3:
				wantWords = cpython.GILWords{Holder: syms["_PyThreadState_Current"]}
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
