package leak

import (
	"fmt"
	"strings"
	"testing"
)

// TestPathText: paths read as a user reads them; an instance's
// ".__dict__['x']" reads ".x"; a root that is an instance itself is shown
// alone; control characters from the target are escaped.
func TestPathText(t *testing.T) {
	for _, c := range []struct {
		root  string
		steps []PathStep
		want  string
	}{
		{"app.CACHE", []PathStep{{"dict, 3 items", "['k1']"}, {"app.Session", ""}}, "app.CACHE (dict, 3 items) ['k1'] -> app.Session"},
		{"app.ROOT", []PathStep{{"app.Node", ".__dict__"}, {"dict, 2 items", "['next']"}, {"app.Node", ""}}, "app.ROOT (app.Node) .next -> app.Node"},
		{"app.RING", []PathStep{{"app.Node", ""}}, "app.RING (app.Node)"},
		{"app.F", []PathStep{{"function", ".__closure__"}, {"tuple, 1 items", "[0]"}, {"cell", ".cell_contents"}, {"list, 9 items", "[8]"}, {"app.Item", ""}},
			"app.F (function) .__closure__ (tuple, 1 items) [0] (cell) .cell_contents (list, 9 items) [8] -> app.Item"},
		{"app.X", []PathStep{{"dict, 1 items", "['a\x1b[2J']"}, {"app.Item", ""}}, `app.X (dict, 1 items) ['a\x1b[2J'] -> app.Item`},
	} {
		if got := PathText(c.root, c.steps); got != c.want {
			t.Errorf("PathText(%q, %+v)\n got %q\nwant %q", c.root, c.steps, got, c.want)
		}
	}
	if !ValidTypeName("app.cache.Session") || ValidTypeName("x'); import os") || ValidTypeName("") {
		t.Errorf("ValidTypeName accepts or refuses the wrong names")
	}
}

// TestPathsHeadline: the report's first line names the holder that
// retains most (not the first found), with sizes and counts people read.
func TestPathsHeadline(t *testing.T) {
	out := []byte(`{"python": "3.13.0", "type": "Session", "total": 41210, "complete": true, "unexplained": 0,` +
		` "holders": [{"root": "app.small", "count": 10, "retained_size": 5000, "path": [{"type": "list, 10 items", "edge": "[0]"}, {"type": "app.Session", "edge": ""}]},` +
		` {"root": "app.cache.CACHE", "count": 41200, "retained_size": 222298112, "path": [{"type": "dict, 41200 items", "edge": "['k']"}, {"type": "app.Session", "edge": ""}]}]}` + "\n")
	r, err := ParsePaths(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "app.cache.CACHE retains 212.0 MiB (holds 41,200 of the 41,210 Session instances, 100 %)"
	if r.Headline != want {
		t.Errorf("headline %q, want %q", r.Headline, want)
	}
	var b strings.Builder
	if err := RenderPaths(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), want+"\n") {
		t.Errorf("render:\n%s", b.String())
	}
	g := &GrowthPathsReport{Growth: GrowthReport{Interval: 30, Types: []Growth{{Type: "Session", CountDelta: 1234}}}, Paths: []*PathsReport{r}}
	if got, want := g.headline(), strings.TrimSuffix(want, ")")+"; the class grew by 1,234 in 30s)"; got != want {
		t.Errorf("growth headline %q, want %q", got, want)
	}
	if got := (&PathsReport{Total: 3}).headline(); got != "" {
		t.Errorf("no holders: headline %q", got)
	}
}

// threadFixture keeps 100 FrameItem instances in the local variable keep
// of held(), running on the thread "holder", and nowhere else; SIZE is
// what they and the list take (sys.getsizeof), computed by the target.
const threadFixture = `
class FrameItem(object):
    pass
READY = threading.Event()
STOP = threading.Event()
SIZE = []
def held(n):
    keep = [FrameItem() for i in range(n)]
    SIZE.append(sys.getsizeof(keep) + sum(map(sys.getsizeof, keep)))
    READY.set()
    STOP.wait()
    return len(keep)
HOLDER = threading.Thread(target=held, args=(100,), name='holder')
HOLDER.start()
READY.wait()
result = [getattr(HOLDER, 'native_id', HOLDER.ident), SIZE[0]]
`

// TestPathsThreadLocal: instances held only by a local variable of a
// function another thread runs are found through that thread's frame:
// the root names the thread (its id and name), the function and, from
// 3.13 on, the variable; the retained size is within 10 % of what the
// target computes. On 3.11 and 3.12 those variables cannot be read
// without keeping their objects alive: no holder, and a note says why;
// nor in a process marked sys._pyglass_stale_threads.
func TestPathsThreadLocal(t *testing.T) {
	forEach(t, true, func(t *testing.T, py interpreter) {
		h := startHarness(t, py)
		var res []int64
		h.exec(threadFixture, &res)
		defer h.exec("STOP.set()\nHOLDER.join()", nil)
		r, err := ParsePaths(h.run(PathsScript(PathsOptions{Type: "FrameItem"})))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		RenderPaths(&b, r)
		t.Logf("\n%s", b.String())
		if py.minor == 11 || py.minor == 12 {
			if len(r.Holders) != 0 || !strings.Contains(strings.Join(r.Notes, "\n"), "cannot be read without side effects") {
				t.Errorf("3.%d: want no holder and the note: %+v", py.minor, r)
			}
			return
		}
		want := fmt.Sprintf(`thread %d "holder": a local of held()`, res[0])
		if py.minor >= 13 {
			want = fmt.Sprintf(`thread %d "holder": held() local keep`, res[0])
		}
		if r.Total != 100 || len(r.Holders) != 1 || r.Holders[0].Root != want || r.Holders[0].Count != 100 {
			t.Fatalf("want one holder %q reaching the 100 instances: %+v", want, r)
		}
		if got, truth := r.Holders[0].RetainedSize, res[1]; got < truth || float64(got) > 1.1*float64(truth) {
			t.Errorf("%s retains %d bytes, the target says %d", want, got, truth)
		}
		if !strings.HasPrefix(r.Headline, want+" retains ") {
			t.Errorf("headline %q", r.Headline)
		}
		// A process the agent marked as forked without Python's
		// after-fork code: sys._current_frames() is not called.
		h.exec("sys._pyglass_stale_threads = True", nil)
		defer h.exec("del sys._pyglass_stale_threads", nil)
		if r, err = ParsePaths(h.run(PathsScript(PathsOptions{Type: "FrameItem"}))); err != nil {
			t.Fatal(err)
		}
		if len(r.Holders) != 0 || !strings.Contains(strings.Join(r.Notes, "\n"), "forked without Python's after-fork code") {
			t.Errorf("stale threads: want no holder and the note: %+v", r)
		}
	})
}
