package leak

import (
	"testing"
)

// TestGarbageCycleAndRetained: a parent/children cycle with a payload
// string only the nodes hold. The cycle is named by attribute and index,
// and the payloads count in the retained size.
func TestGarbageCycleAndRetained(t *testing.T) {
	forEach(t, true, func(t *testing.T, py interpreter) {
		h := startHarness(t, py)
		h.exec(`
class Node(object):
    def __init__(self, parent=None):
        self.parent = parent
        self.children = [1, 2, 3]
        self.payload = 'x' * 100000 + str(id(self))
        if parent is not None:
            parent.children.append(self)
    def __del__(self):
        pass
gc.disable()
root = Node()
Node(root)
root = None
`, nil)
		opts := GarbageOptions{SaveAll: true}
		if py.py2 {
			opts = GarbageOptions{Collect: true}
		}
		r, err := ParseGarbage(h.run(GarbageScript(opts)))
		h.exec("gc.enable()", nil)
		if err != nil {
			t.Fatal(err)
		}
		row := findType(r, "__main__.Node")
		if row == nil || row.Count != 2 {
			t.Fatalf("Node row %+v", row)
		}
		got := CycleText(row.Cycle)
		if got != "Node -> .parent -> Node -> .children[3] -> Node" && got != "Node -> .children[3] -> Node -> .parent -> Node" {
			t.Errorf("cycle = %q (%+v)", got, row.Cycle)
		}
		if row.RetainedSize < row.ShallowSize+2*100000 {
			t.Errorf("retained %d < shallow %d + 2 payloads of 100000", row.RetainedSize, row.ShallowSize)
		}
		if row.RetainedSize > row.ShallowSize+2*100000+4096 {
			t.Errorf("retained %d counts more than the nodes, dicts and payloads (shallow %d)", row.RetainedSize, row.ShallowSize)
		}
		t.Logf("cycle %s; shallow %d retained %d", got, row.ShallowSize, row.RetainedSize)
	})
}
