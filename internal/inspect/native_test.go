package inspect

import (
	"strings"
	"testing"
)

func funcNames(fs []Frame) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Function)
	}
	return strings.Join(out, " ")
}

// TestMergeNative: evaluation-loop frames are replaced by the Python
// calls they run (by name, by where the entry frames live when named
// nothing), tail-call handlers are hidden, and frames that do not line
// up are kept apart with a note.
func TestMergeNative(t *testing.T) {
	c := func(name string, lo, hi uint64) Frame { return Frame{Function: name, Native: true, spLo: lo, spHi: hi} }
	py := []Frame{{Function: "a", entry: true, shim: 0x950}, {Function: "b"}, {Function: "c", entry: true, shim: 0x750}}
	nat := []Frame{c("main", 0x900+0x100, ^uint64(0)), c("_PyEval_EvalFrameDefault", 0x900, 0xa00), c("call", 0x800, 0x900),
		c("_PyEval_EvalFrameDefault", 0x700, 0x800), c("_TAIL_CALL_LOAD_FAST", 0x680, 0x700), c("sleep", 0x600, 0x680)}
	cases := []struct {
		name            string
		py, nat         []Frame
		major           int
		want, wantApart string
	}{
		{"by shims", py, nat, 3, "main a b call c sleep", ""},
		{"by name", []Frame{{Function: "a", entry: true}, {Function: "b"}, {Function: "c", entry: true}}, nat, 3, "main a b call c sleep", ""},
		{"stripped, by shims", py, []Frame{c("", 0xa00, ^uint64(0)), c("", 0x900, 0xa00), c("", 0x800, 0x900), c("", 0x700, 0x800), c("sleep", 0x600, 0x700)}, 3,
			" a b  c sleep", ""},
		{"2.7", []Frame{{Function: "a", entry: true}, {Function: "b", entry: true}},
			[]Frame{c("PyEval_EvalFrameEx", 2, 3), c("call_function", 1, 2), c("PyEval_EvalFrameEx.cold", 0, 1)}, 2, "a call_function b", ""},
		{"missing loop frame", []Frame{{Function: "a", entry: true}, {Function: "b", entry: true}}, nat[:2], 3, "a b", "main _PyEval_EvalFrameDefault"},
	}
	for _, tc := range cases {
		m, apart, note := mergeNative(tc.py, tc.nat, tc.major)
		if funcNames(m) != tc.want || funcNames(apart) != tc.wantApart || (note != "") != (tc.wantApart != "") {
			t.Errorf("%s: merged %q apart %q note %q; want %q apart %q", tc.name, funcNames(m), funcNames(apart), note, tc.want, tc.wantApart)
		}
	}
}

// TestHideInterp: the interpreter's frames before the innermost Python
// frame are hidden, the others (other files', the innermost C calls even
// the interpreter's) kept; a thread without Python frames keeps all.
func TestHideInterp(t *testing.T) {
	lib := "/usr/lib/libpython3.12.so.1.0"
	interp := map[string]bool{lib: true, "/usr/bin/python3.12": true}
	c := func(name, file string) Frame { return Frame{Function: name, File: file, Native: true} }
	frames := []Frame{c("_start", "/usr/bin/python3.12"), c("__libc_start_main", "/lib/libc.so.6"), c("Py_RunMain", lib),
		{Function: "<module>"}, c("_PyFunction_Vectorcall", lib), {Function: "f"}, c("_ctypes_callproc", "/x/_ctypes.so"),
		c("PyObject_Call", lib), {Function: "g"}, c("time_sleep", lib), c("clock_nanosleep", "/lib/libc.so.6")}
	got := funcNames(hideInterp(frames, interp))
	if want := "__libc_start_main <module> f _ctypes_callproc g time_sleep clock_nanosleep"; got != want {
		t.Errorf("hidden: %q, want %q", got, want)
	}
	if got, want := funcNames(hideInterp(frames, nil)), funcNames(frames); got != want {
		t.Errorf("no interpreter files: %q, want %q", got, want)
	}
	c2 := []Frame{c("start_thread", "/lib/libc.so.6"), c("take_gil", lib)}
	if got := funcNames(hideInterp(c2, interp)); got != "start_thread take_gil" {
		t.Errorf("no Python frame: %q", got)
	}
}
