package pyproc

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
)

// prefixed keeps the strings of vs that start with major.minor.
func prefixed(vs []string, mm string) []string {
	var out []string
	for _, v := range vs {
		if strings.HasPrefix(v, mm) {
			out = append(out, v)
		}
	}
	return out
}

func TestVersionStringsOfMatchesFullScan(t *testing.T) {
	data := []byte("3.9.1\x00/opt/py/versions/3.9.18\x00GCC 12.2.0\x0013.9.1\x00x.3.9.2\x00Python-3.9.7\x003.9.0rc1\x003.9.\x003.9.3.9.4\x00a very long string ending 3.9.5\x003.9.6")
	got := versionStringsOf(data, 3, 9, 64)
	want := prefixed(versionStrings(data, 64), "3.9.")
	if !slices.Equal(got, want) {
		t.Errorf("versionStringsOf = %q, want %q", got, want)
	}
	if !slices.Contains(got, "3.9.0rc1") || !slices.Contains(got, "3.9.18") || slices.Contains(got, "3.9.2") {
		t.Errorf("versionStringsOf = %q", got)
	}
	// The .rodata of every interpreter: the same answer as a full scan.
	for _, path := range pyproctest.Files() {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		e, err := elfsym.Open(f)
		if err != nil {
			f.Close()
			t.Fatalf("%s: %v", path, err)
		}
		data, err := e.SectionData(".rodata", 256<<20)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m := nameOracle.FindStringSubmatch(filepath.Base(path))
		if m == nil {
			continue
		}
		mm := m[1] + "." + m[2] + "."
		var major, minor int
		major, minor = int(m[1][0]-'0'), 0
		for _, c := range m[2] {
			minor = minor*10 + int(c-'0')
		}
		got := versionStringsOf(data, major, minor, 64)
		want := prefixed(versionStrings(data, 1<<20), mm)
		if !slices.Equal(got, want) || len(got) == 0 {
			t.Errorf("%s: versionStringsOf = %q, full scan %q", path, got, want)
		}
	}
}

func TestScanVersionStringsAcrossChunks(t *testing.T) {
	// Version strings at every offset around the chunk boundaries.
	var data []byte
	filler := []byte("some text\x00/usr/lib/python3.9/x\x00")
	for len(data) < 8*scanChunk {
		data = append(data, filler...)
	}
	step := scanChunk - scanOverlap
	n := 0
	for k, b := 1, step; b < len(data)-64; k, b = k+1, b+step {
		for d := -42; d <= 42; d += 14 {
			at := b + d + k*5%14
			v := []byte("\x00/opt/" + "3.9." + strconv.Itoa(n%100) + "\x00")
			n++
			copy(data[at:], v)
		}
	}
	copy(data[len(data)-8:], "\x003.9.77")
	want := versionStringsOf(data, 3, 9, 1<<20)
	if len(want) < 50 {
		t.Fatalf("only %d version strings in the test data", len(want))
	}
	got, err := scanVersionStrings(bytes.NewReader(data), int64(len(data)), 3, 9, 1<<20)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("scanVersionStrings: %d strings (%v), want %d\ngot  %q\nwant %q", len(got), err, len(want), got, want)
	}
	got, _ = scanVersionStrings(bytes.NewReader(data), int64(len(data)), 3, 9, 5)
	if !slices.Equal(got, want[:5]) {
		t.Errorf("limit 5: %q", got)
	}
}
