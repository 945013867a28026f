package layout

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"
)

// TestGeneratedMatchesJSON: the tables compiled in (tables_gen.go) are
// those of tables.json, the generator's output: the same keys, each
// field's offset, -1 for a field a table leaves out, and the version the
// key names. Out of date after a change to tables.json: run
// `go run ./cpython/layout/gen -go-only`.
func TestGeneratedMatchesJSON(t *testing.T) {
	b, err := os.ReadFile("tables.json")
	if err != nil {
		t.Fatal(err)
	}
	var tables map[string]struct {
		Offsets map[string]int `json:"offsets"`
	}
	if err := json.Unmarshal(b, &tables); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range tables {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := Keys(); !slices.Equal(got, keys) {
		t.Fatalf("Keys() = %v, tables.json has %v: run `go run ./cpython/layout/gen -go-only`", got, keys)
	}
	for _, k := range keys {
		l, err := ForKey(k)
		if err != nil {
			t.Fatalf("ForKey(%s): %v", k, err)
		}
		var major, minor int
		_, err = fmt.Sscanf(k, "%d.%d", &major, &minor)
		ok := err == nil
		if !ok || l.Major != major || l.Minor != minor {
			t.Errorf("%s: layout says %d.%d", k, l.Major, l.Minor)
		}
		for name, v := range l.Fields() {
			want, listed := tables[k].Offsets[name]
			if !listed {
				want = -1
			}
			if v != want {
				t.Errorf("%s: %s is %d compiled in, %d in tables.json: run `go run ./cpython/layout/gen -go-only`", k, name, v, want)
			}
		}
		for name := range tables[k].Offsets {
			if _, ok := l.Fields()[name]; !ok {
				t.Errorf("%s: tables.json's field %s is not a Layout field", k, name)
			}
		}
	}
	// A copy each time: a caller may change its own.
	a, _ := ForKey(keys[0])
	a.InterpNext = 12345
	if b, _ := ForKey(keys[0]); b.InterpNext == 12345 {
		t.Errorf("ForKey returned the shared table, not a copy")
	}
}
