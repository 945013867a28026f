package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pyglass/pyglass"
)

// jsonKeys collects every object key of a decoded JSON value.
func jsonKeys(v any, keys map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			keys[k] = true
			jsonKeys(e, keys)
		}
	case []any:
		for _, e := range x {
			jsonKeys(e, keys)
		}
	}
}

// TestTasksHelpJSON: `pyglass help tasks` documents every key that
// `pyglass tasks --json` can print (a dump with every field set).
func TestTasksHelpJSON(t *testing.T) {
	due := 1.5
	d := pyglass.TaskDump{PID: 1, Python: pyglass.PythonRef{Version: "3.13.0", Path: "/p"}, Cycles: [][]string{{"0x1", "0x2"}},
		Tasks: []pyglass.AsyncTask{{ID: "0x1", Name: "n", State: "done", Thread: 2, Loop: "0x3", Running: true,
			Stack: []pyglass.Frame{{Function: "f", File: "x.py", Line: 3}}, AwaitedBy: []string{"0x2"}, Exception: "E", Error: "e",
			Awaits: pyglass.TaskAwaits{Kind: "sleep", Object: "0x4", Type: "Future", Tasks: []string{"0x2"}, Deadline: 9.5, DueIn: &due}}}}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	jsonKeys(v, keys)
	for k := range keys {
		if !strings.Contains(tasksHelp, `"`+k+`"`) {
			t.Errorf("pyglass help tasks does not document the JSON key %q", k)
		}
	}
	if len(keys) < 20 {
		t.Errorf("only %d keys: %v", len(keys), keys)
	}
}
