package leak

import "testing"

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
