package leak

import (
	"encoding/json"
	"io"
	"testing"
)

// FuzzReports: a report is what the target's own Python sends back, so a
// hostile target may send anything. Every Parse function, and, for what
// decodes, the renderers, the diffs and the headlines, take any bytes
// without a panic.
func FuzzReports(f *testing.F) {
	one := int64(1)
	for _, v := range []any{
		GarbageReport{Python: "3.15.2", Collected: &one, Total: 2, Types: []GarbageType{{
			Type: "__main__.Node", Count: 2, Examples: []string{"<Node>"},
			Cycle:     []CycleStep{{Type: "__main__.Node", Name: "Node", Edge: ".next"}, {Type: "dict", Container: true, Edge: "['k']"}},
			CreatedAt: []CreationLine{{File: "/x.py", Line: 3, Count: 2}},
		}}},
		ObjectsReport{Python: "3.15.2", Method: "walk", Complete: true, Total: 3, TypeCount: 2, Types: []TypeCount{{Type: "list", Count: 2, Size: 112}, {Type: "dict", Count: 1, Size: 64}}},
		GCReport{Python: "3.15.2", Enabled: true, Thresholds: []int64{2000, 10, 10}, Counts: []int64{1, 2, 3}, Stats: []GenStats{{Generation: 0, Collections: 4}}},
		TraceReport{Python: "3.15.2", Action: "status", Tracing: true, Frames: 1},
		TraceTopReport{Python: "3.15.2", By: ByTraceback, Method: "walk", Frames: 2, Groups: []TraceGroup{{Frames: []TraceFrame{{File: "/x.py", Line: 3}, {File: "/y.py", Line: 9}}, Size: 64, Count: 1}}, GroupCount: 1},
		PathsReport{Python: "3.15.2", Type: "__main__.Node", Total: 2, Holders: []Holder{{Root: "__main__.CACHE", Count: 2, RetainedSize: 300, Path: []PathStep{{Type: "dict, 2 items", Edge: "['a']"}, {Type: "__main__.Node"}}}}},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte("target's own output\n"), b...))
	}
	f.Add([]byte(`{"error": "MemoryError", "kind": "unsupported"}`))
	f.Fuzz(func(t *testing.T, out []byte) {
		if r, err := ParseGarbage(out); err == nil {
			RenderGarbage(io.Discard, r)
		}
		if r, err := ParseObjects(out); err == nil {
			RenderObjects(io.Discard, r)
			g := Diff(r, &ObjectsReport{})
			RenderGrowth(io.Discard, g, 5)
			RenderGrowth(io.Discard, Diff(&ObjectsReport{}, r), 5)
		}
		if r, err := ParseGC(out); err == nil {
			RenderGC(io.Discard, r)
		}
		if r, err := ParseTrace(out); err == nil {
			RenderTrace(io.Discard, r)
		}
		if r, err := ParseTraceTop(out); err == nil {
			RenderTraceTop(io.Discard, r, 5)
			RenderTraceGrowth(io.Discard, DiffTraces(&TraceTopReport{}, r), 5)
			RenderTraceGrowth(io.Discard, DiffTraces(r, &TraceTopReport{}), 5)
		}
		if r, err := ParsePaths(out); err == nil {
			RenderPaths(io.Discard, r)
			RenderGrowthPaths(io.Discard, &GrowthPathsReport{Paths: []*PathsReport{r}}, 5)
		}
	})
}
