package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// expected lists the header sets this machine is meant to have; a missing
// one is reported as a skip with its reason.
var expected = []string{"2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14"}

// TestTablesUpToDate regenerates the table of every interpreter whose
// headers are present and compares it with the committed tables.json.
func TestTablesUpToDate(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not found: cannot compile the offset programs")
	}
	b, err := os.ReadFile(filepath.Join("..", "tables.json"))
	if err != nil {
		t.Fatal(err)
	}
	var committed map[string]*table
	if err := json.Unmarshal(b, &committed); err != nil {
		t.Fatal(err)
	}
	srcs, err := discover("")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range srcs {
		s := s
		seen[s.key()] = true
		t.Run(s.tag+"-"+s.key(), func(t *testing.T) {
			t.Parallel()
			got, err := generate(s)
			if err != nil {
				t.Fatal(err)
			}
			tab := committed[s.key()]
			if tab == nil {
				t.Skipf("headers of %v present but tables.json has no %s: run `go run ./cpython/layout/gen`", s, s.key())
			}
			if !equal(tab.Offsets, got) {
				if alt := committed[s.key()+"-"+s.tag]; alt != nil && equal(alt.Offsets, got) {
					return
				}
				for k, v := range got {
					if tab.Offsets[k] != v {
						t.Errorf("%s: generated %d, committed %d", k, v, tab.Offsets[k])
					}
				}
				t.Errorf("tables.json is out of date for %v: run `go run ./cpython/layout/gen`", s)
			}
		})
	}
	for _, v := range expected {
		if !seen[v] {
			t.Run("absent-"+v, func(t *testing.T) { t.Skipf("no headers for %s on this machine", v) })
		}
	}
}

// TestSpecCoversLayout checks that every spec entry names a field that
// the generator can emit, and the C program of each version is
// well-formed enough to contain all in-range fields.
func TestSpecRanges(t *testing.T) {
	for _, f := range fields {
		if vnum(f.from, 0) > vnum(f.to, 1<<30) {
			t.Errorf("%s: empty version range %q..%q", f.name, f.from, f.to)
		}
	}
	// Two entries of one field must not overlap.
	for i, a := range fields {
		for _, b := range fields[i+1:] {
			if a.name == b.name && vnum(a.from, 0) <= vnum(b.to, 1<<30) && vnum(b.from, 0) <= vnum(a.to, 1<<30) {
				t.Errorf("%s: overlapping entries %q and %q", a.name, a.expr, b.expr)
			}
		}
	}
}
