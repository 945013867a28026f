package cli

import (
	"bufio"
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

// TestRenderTasksTable: the table, line for line (names quoted and
// escaped, the running task, an exception, awaited-by with names, a
// frame, a read error, a cycle).
func TestRenderTasksTable(t *testing.T) {
	due := 2.0
	d := &pyglass.TaskDump{PID: 7, Python: pyglass.PythonRef{Version: "3.12.1", Path: "/usr/bin/py\x1b"}, Cycles: [][]string{{"0x1", "0x2"}},
		Tasks: []pyglass.AsyncTask{
			{ID: "0x1", Name: "main \"loop\"", State: "pending", Loop: "0xa", Running: true,
				Stack:  []pyglass.Frame{{Function: "main", File: "/app/m.py", Line: 12}, {Function: "sleep", File: "/lib/asyncio/tasks.py", Line: 665}},
				Awaits: pyglass.TaskAwaits{Kind: "sleep", Type: "_asyncio.Future", Object: "0xf", DueIn: &due}, AwaitedBy: []string{"0x2"}},
			{ID: "0x2", Name: "w\n", State: "pending", Loop: "0xa", Awaits: pyglass.TaskAwaits{Kind: "task", Tasks: []string{"0x1"}},
				AwaitedBy: []string{"0x1", "0x9"}, Error: "reading its coroutines: bad\tthing"},
			{ID: "0x3", State: "done", Loop: "0xa", Exception: "ValueError"},
		}}
	var b strings.Builder
	w := bufio.NewWriter(&b)
	renderTasks(w, d)
	w.Flush()
	want := `Process 7, Python 3.12.1 (/usr/bin/py\x1b): 3 tasks

Task 0x1 "main \"loop\"" (pending, running now) loop 0xa
  awaits: sleep (_asyncio.Future 0xf), due in 2s
  awaited by: 0x2 "w\\n"
    main (/app/m.py:12)
    sleep (/lib/asyncio/tasks.py:665)

Task 0x2 "w\\n" (pending) loop 0xa
  awaits: task 0x1 "main \"loop\""
  awaited by: 0x1 "main \"loop\"", 0x9
  error: reading its coroutines: bad\tthing

Task 0x3 (done, raised ValueError) loop 0xa

Await cycles (1):
  0x1 "main \"loop\"" awaits 0x2 "w\\n" awaits 0x1 "main \"loop\""
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}
