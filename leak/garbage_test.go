package leak

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// leakyFixture defines Leaky (with __del__ and a __repr__ that raises)
// and makes 500 cycles of two of them.
const leakyFixture = `
import weakref
class Leaky(object):
    def __del__(self):
        pass
    def __repr__(self):
        raise RuntimeError('repr must not be called')

def make_cycles(n):
    global last
    for i in range(n):
        a = Leaky(); b = Leaky()  # ALLOC
        a.other = b
        b.other = a
    last = weakref.ref(a)

gc.collect()
`

func allocLine(t *testing.T) int {
	for i, l := range strings.Split(leakyFixture, "\n") {
		if strings.Contains(l, "# ALLOC") {
			return i + 1
		}
	}
	t.Fatal("no ALLOC line in fixture")
	return 0
}

func findType(r *GarbageReport, name string) *GarbageType {
	for i := range r.Types {
		if r.Types[i].Type == name {
			return &r.Types[i]
		}
	}
	return nil
}

func checkLeakyRow(t *testing.T, row *GarbageType, wantCount int64) {
	t.Helper()
	if row == nil {
		t.Fatalf("no __main__.Leaky row")
	}
	if row.Count != wantCount {
		t.Errorf("Leaky count = %d, want %d", row.Count, wantCount)
	}
	if got, want := CycleText(row.Cycle), "Leaky -> .other -> Leaky -> .other -> Leaky"; got != want {
		t.Errorf("cycle = %q, want %q (steps %+v)", got, want, row.Cycle)
	}
	if len(row.Examples) != DefaultExamples {
		t.Errorf("examples = %q, want %d", row.Examples, DefaultExamples)
	}
	for _, e := range row.Examples {
		if !strings.HasPrefix(e, "<__main__.Leaky object at 0x") {
			t.Errorf("example %q is not the safe repr", e)
		}
	}
}

// TestGarbageLegacyFinalizers: on 2.7 cycles of objects with __del__ end in
// gc.garbage; on 3.x (PEP 442) they are freed and the report is empty.
func TestGarbageLegacyFinalizers(t *testing.T) {
	forEach(t, true, func(t *testing.T, py interpreter) {
		h := startHarness(t, py)
		h.exec(leakyFixture+`
make_cycles(500)
gc.collect()
leaky = [o for o in gc.garbage if type(o) is Leaky]
result = {
    'leaky': len(leaky),
    'shallow': sum(sys.getsizeof(o) for o in gc.garbage),
    'dicts': sum(sys.getsizeof(o.__dict__) for o in leaky),
}
leaky = o = None
`, nil)
		var want struct{ Leaky, Shallow, Dicts int64 }
		h.exec("result = {'leaky': len([o for o in gc.garbage if type(o) is Leaky]), 'shallow': sum(sys.getsizeof(o) for o in gc.garbage), 'dicts': sum(sys.getsizeof(o.__dict__) for o in gc.garbage if type(o) is Leaky)}; o = None", &want)
		var before, after state
		h.exec("result = snapshot(gc.garbage[:5])", &before)
		out := h.run(GarbageScript(GarbageOptions{}))
		h.exec("result = snapshot(gc.garbage[:5])", &after)
		r, err := ParseGarbage(out)
		if err != nil {
			t.Fatalf("%v\noutput: %s", err, out)
		}
		if before.String() != after.String() {
			t.Errorf("state changed by the report:\nbefore %s\nafter  %s", before, after)
		}
		if !py.py2 {
			if r.Total != 0 || len(r.Types) != 0 {
				t.Errorf("3.x garbage report not empty: %+v", r)
			}
			return
		}
		if want.Leaky != 1000 {
			t.Fatalf("fixture made %d uncollectable Leaky, want 1000", want.Leaky)
		}
		checkLeakyRow(t, findType(r, "__main__.Leaky"), 1000)
		if r.ShallowSize != want.Shallow {
			t.Errorf("shallow size = %d, fixture computes %d", r.ShallowSize, want.Shallow)
		}
		// Each Leaky keeps its __dict__ alive and nothing else: the
		// other Leaky is its own garbage, 'other' is interned.
		if row := findType(r, "__main__.Leaky"); row.RetainedSize != want.Shallow+want.Dicts {
			t.Errorf("retained = %d, want shallow+dicts = %d", row.RetainedSize, want.Shallow+want.Dicts)
		}
		if !r.RetainedExact {
			t.Errorf("retained sizes not exact")
		}
		var buf bytes.Buffer
		if err := RenderGarbage(&buf, r); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", buf.String())
	})
}

// TestGarbageSaveAll: --saveall on 3.x reports the cycles the collection
// frees, with their creation line, then leaves gc.garbage empty, the
// flags as they were, and the objects freed.
func TestGarbageSaveAll(t *testing.T) {
	line := allocLine(t)
	forEach(t, true, func(t *testing.T, py interpreter) {
		if py.py2 {
			testenv.Skipf(t, "2.7: cycles with __del__ are uncollectable; covered by TestGarbageLegacyFinalizers")
		}
		h := startHarness(t, py)
		h.exec(leakyFixture+`
gc.set_debug(gc.DEBUG_UNCOLLECTABLE)
tracemalloc.start(1)
gc.disable()
make_cycles(500)
`, nil)
		var before, after state
		h.exec("result = snapshot()", &before)
		out := h.run(GarbageScript(GarbageOptions{SaveAll: true}))
		h.exec("result = snapshot()", &after)
		var freed bool
		h.exec("result = last() is None; tracemalloc.stop(); gc.set_debug(0); gc.enable()", &freed)
		r, err := ParseGarbage(out)
		if err != nil {
			t.Fatalf("%v\noutput: %s", err, out)
		}
		if !r.SaveAll || r.Saved == nil || *r.Saved < 1000 {
			t.Errorf("saveall report: saveall=%v saved=%v", r.SaveAll, r.Saved != nil && *r.Saved >= 1000)
		}
		row := findType(r, "__main__.Leaky")
		checkLeakyRow(t, row, 1000)
		if !r.Tracemalloc {
			t.Errorf("report says tracemalloc is off")
		} else if row != nil && py.minor == 11 {
			// CPython gh-101430: no traceback for objects with a pre-header.
			if len(row.CreatedAt) != 0 || len(r.Notes) == 0 {
				t.Errorf("3.11: created_at = %+v, notes = %q; want none and a note", row.CreatedAt, r.Notes)
			}
		} else if row != nil {
			if len(row.CreatedAt) == 0 || row.CreatedAt[0].File != "fixture.py" || row.CreatedAt[0].Line != line || row.CreatedAt[0].Count != 1000 {
				t.Errorf("created_at = %+v, want fixture.py:%d x1000", row.CreatedAt, line)
			}
		}
		if after.Garbage != 0 || r.GarbageLen != 0 {
			t.Errorf("gc.garbage has %d objects after --saveall (report says %d)", after.Garbage, r.GarbageLen)
		}
		if after.Debug != before.Debug {
			t.Errorf("gc debug flags %d, were %d", after.Debug, before.Debug)
		}
		if !freed {
			t.Errorf("the saved Leaky objects were not freed")
		}
		if before.String() != after.String() {
			t.Errorf("state changed by the report:\nbefore %s\nafter  %s", before, after)
		}
		js, _ := json.Marshal(row)
		t.Logf("%s", js)
	})
}
