package layout_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/memory"
)

// TestTablesValidate: every generated table passes Validate.
func TestTablesValidate(t *testing.T) {
	keys := layout.Keys()
	if len(keys) < 10 {
		t.Fatalf("only %d tables: %v", len(keys), keys)
	}
	for _, k := range keys {
		l, err := layout.ForKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Validate(); err != nil {
			t.Errorf("table %s: %v", k, err)
		}
	}
}

// TestValidateRejects: offsets outside their structure, implausible
// sizes and fields below -1 are errors.
func TestValidateRejects(t *testing.T) {
	for _, c := range []struct {
		key string
		set map[string]int
	}{
		{"3.13", map[string]int{"SizeofPyCodeObject": 32}},
		{"3.13", map[string]int{"CodeCoFirstlineno": 4000}},
		{"3.13", map[string]int{"CodeCoFirstlineno": 206}}, // 4 bytes from 206 end past 208
		{"3.10", map[string]int{"CodeCoName": -2}},
		{"3.12", map[string]int{"ASCIIObjectState": 8}},
		{"3.12", map[string]int{"SizeofPyDictKeyEntry": 0}},
		{"2.7", map[string]int{"SizeofPyDictEntry": 8}},
		{"3.11", map[string]int{"ObjectObType": 16}},
		{"3.9", map[string]int{"TstateNext": 2 << 20}},
		{"3.14", map[string]int{"SizeofPyASCIIObject": 64, "SizeofPyCompactUnicodeObject": 56}},
	} {
		l, err := layout.ForKey(c.key)
		if err != nil {
			t.Fatal(err)
		}
		f := l.Fields()
		for k, v := range c.set {
			f[k] = v
		}
		bad := fromFields(t, l, f)
		if err := bad.Validate(); !errors.Is(err, layout.ErrBadLayout) {
			t.Errorf("%s %v: Validate = %v, want ErrBadLayout", c.key, c.set, err)
		}
	}
}

// fromFields returns a copy of l with the fields f.
func fromFields(t *testing.T, l *layout.Layout, f map[string]int) *layout.Layout {
	t.Helper()
	out := *l
	if err := out.Set(f); err != nil {
		t.Fatal(err)
	}
	return &out
}

// runtimeAddr is where the tests put a fake _PyRuntime.
const runtimeAddr = 0x7f0000010000

// fakeRuntime maps block at runtimeAddr.
func fakeRuntime(block []byte) *memory.Fake {
	var m memory.Fake
	m.Map(runtimeAddr, append(block, make([]byte, 4096)...))
	return &m
}

// debugBlock builds the debug offsets of the table key for 3.minor.
func debugBlock(t *testing.T, key string, minor int, version uint64, ft bool) []byte {
	t.Helper()
	l, err := layout.ForKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := layouttest.DebugBlock(l, minor, version, ft)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDebugOffsetsForged: a forged _Py_DebugOffsets (code_object.size 32,
// firstlineno 4000) is refused by Layout; ForTarget falls back to the
// table with a one-line warning, also when the offsets pass the checks
// but disagree with the table, or describe another version.
func TestDebugOffsetsForged(t *testing.T) {
	for _, v := range []struct {
		minor   int
		version uint64
	}{{13, 0x030d00f0}, {14, 0x030e02f0}, {15, 0x030f02f0}} {
		key := "3." + string(rune('0'+v.minor/10)) + string(rune('0'+v.minor%10))
		table, err := layout.ForKey(key)
		if err != nil {
			t.Fatal(err)
		}
		good := debugBlock(t, key, 0, v.version, false)
		l, warn, err := layout.ForTarget(fakeRuntime(good), runtimeAddr, 3, v.minor)
		if err != nil || len(warn) != 0 || l.CodeCoFirstlineno != table.CodeCoFirstlineno {
			t.Fatalf("%s: sound block: %v, warnings %q", key, err, warn)
		}
		for _, c := range []struct {
			name string
			set  map[string]uint64
			want string
		}{
			{"forged code object", map[string]uint64{"code_object.size": 32, "code_object.firstlineno": 4000}, "outside code_object.size = 32"},
			{"huge offset", map[string]uint64{"thread_state.next": 1 << 40}, "thread_state.next"},
			{"GIL outside", map[string]uint64{"interpreter_state.gil_runtime_state_locked": 8}, "gil_runtime_state_locked"},
			{"disagrees", map[string]uint64{"code_object.filename": 144}, "disagree with the table"},
			{"other version", map[string]uint64{}, "unusable"},
		} {
			bad := append([]byte(nil), good...)
			for n, x := range c.set {
				if err := layouttest.SetMember(bad, v.minor, n, x); err != nil {
					t.Fatal(err)
				}
			}
			if c.name == "other version" {
				bad[10]++ // the next minor in the header
			}
			l, warn, err := layout.ForTarget(fakeRuntime(bad), runtimeAddr, 3, v.minor)
			if err != nil {
				t.Errorf("%s %s: %v", key, c.name, err)
				continue
			}
			if len(warn) != 1 || !strings.Contains(warn[0], c.want) || !strings.Contains(warn[0], "own table for "+key) || strings.Contains(warn[0], "\n") {
				t.Errorf("%s %s: warnings %q, want one line naming %q", key, c.name, warn, c.want)
			}
			if l.CodeCoFirstlineno != table.CodeCoFirstlineno || l.CodeCoFilename != table.CodeCoFilename {
				t.Errorf("%s %s: fallback layout is not the table", key, c.name)
			}
			if c.name == "forged code object" {
				d, err := layout.DecodeDebugOffsets(bad)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.Layout(); !errors.Is(err, layout.ErrBadDebugOffsets) {
					t.Errorf("%s: Layout of a forged block: %v, want ErrBadDebugOffsets", key, err)
				}
			}
		}
	}
}

// TestNewerVersion: a version newer than every table (a fake 3.16 made
// of the newest known version's offsets) is read with its own offsets
// and one warning; offsets that fail the checks refuse it clearly.
func TestNewerVersion(t *testing.T) {
	newest := layout.NewestDebugMinor()
	key := "3.14"
	if newest != 14 {
		key = "3.15"
	}
	table, err := layout.ForKey(key)
	if err != nil {
		t.Skipf("no table %s: %v", key, err)
	}
	block := debugBlock(t, key, newest, 0x031000a2, false) // 3.16.0a2
	l, warn, err := layout.ForTarget(fakeRuntime(block), runtimeAddr, 3, 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) != 1 || !strings.Contains(warn[0], "3.16 is newer than pyglass was tested on") {
		t.Errorf("warnings %q", warn)
	}
	if l.Major != 3 || l.Minor != 16 || l.Validate() != nil {
		t.Errorf("layout %d.%d: %v", l.Major, l.Minor, l.Validate())
	}
	tf, lf := table.Fields(), l.Fields()
	for name, v := range tf {
		if lf[name] != v {
			t.Errorf("%s: %d, newest table %d", name, lf[name], v)
		}
	}
	// A member moved (inside its structure): the target's value is used,
	// and the fields it does not carry come only from anchored groups.
	moved := append([]byte(nil), block...)
	if err := layouttest.SetMember(moved, newest, "code_object.filename", 144); err != nil {
		t.Fatal(err)
	}
	l, _, err = layout.ForTarget(fakeRuntime(moved), runtimeAddr, 3, 16)
	if err != nil || l.CodeCoFilename != 144 || l.CodeCoFirstlineno != table.CodeCoFirstlineno {
		t.Errorf("moved co_filename: %v, layout %+v", err, l)
	}
	// Offsets that fail the checks: refused, saying why, as unsupported.
	bad := append([]byte(nil), block...)
	if err := layouttest.SetMember(bad, newest, "code_object.firstlineno", 4000); err != nil {
		t.Fatal(err)
	}
	_, _, err = layout.ForTarget(fakeRuntime(bad), runtimeAddr, 3, 16)
	if !errors.Is(err, layout.ErrUnsupported) || !strings.Contains(err.Error(), "newer than pyglass knows") {
		t.Errorf("bad 3.16 offsets: %v, want ErrUnsupported", err)
	}
	// ReadDebugOffsets, which PEP 768 requests use to write into the
	// target, does not guess a newer version's members.
	if _, err := layout.ReadDebugOffsets(fakeRuntime(block), runtimeAddr); !errors.Is(err, layout.ErrUnsupported) {
		t.Errorf("ReadDebugOffsets of 3.16: %v, want ErrUnsupported", err)
	}
	// No _PyRuntime address: refused.
	if _, _, err := layout.ForTarget(fakeRuntime(block), 0, 3, 16); !errors.Is(err, layout.ErrUnsupported) {
		t.Errorf("3.16 without _PyRuntime: %v", err)
	}
}

// TestFreeThreaded: a free-threaded build (free_threaded = 1) is refused
// with ErrFreeThreaded, known version or newer.
func TestFreeThreaded(t *testing.T) {
	for _, c := range []struct {
		key          string
		minor, image int
		version      uint64
	}{{"3.13", 13, 13, 0x030d00f0}, {"3.14", 14, 14, 0x030e00f0}, {"3.15", 15, 15, 0x030f00f0}, {"3.15", 15, 16, 0x031000f0}} {
		block := debugBlock(t, c.key, c.minor, c.version, true)
		_, _, err := layout.ForTarget(fakeRuntime(block), runtimeAddr, 3, c.image)
		if !errors.Is(err, layout.ErrFreeThreaded) {
			t.Errorf("3.%d free-threaded: %v, want ErrFreeThreaded", c.image, err)
		}
	}
}

// FuzzDebugOffsets feeds random _Py_DebugOffsets blocks through the
// decoding and ForTarget: no panic, and every layout returned passes
// Validate.
func FuzzDebugOffsets(f *testing.F) {
	for _, k := range []string{"3.13", "3.14"} {
		l, err := layout.ForKey(k)
		if err != nil {
			continue
		}
		b, err := layouttest.DebugBlock(l, 0, uint64(l.Major)<<24|uint64(l.Minor)<<16|0xf0, false)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(l.Minor))
		f.Add(b, uint8(16))
	}
	f.Add([]byte("xdebugpy"), uint8(13))
	f.Fuzz(func(t *testing.T, block []byte, minor uint8) {
		if d, err := layout.DecodeDebugOffsets(block); err == nil {
			if l, err := d.Layout(); err == nil {
				if err := l.Validate(); err != nil {
					t.Fatalf("Layout returned an invalid layout: %v", err)
				}
			}
			layout.DebugOnly(d)
		}
		l, warn, err := layout.ForTarget(fakeRuntime(block), runtimeAddr, 3, int(minor))
		if err == nil {
			if l == nil {
				t.Fatal("no layout and no error")
			}
			if err := l.Validate(); err != nil {
				t.Fatalf("ForTarget returned an invalid layout: %v", err)
			}
		}
		for _, w := range warn {
			if strings.Contains(w, "\n") || len(w) > 400 {
				t.Fatalf("warning not one short line: %q", w)
			}
		}
	})
}
