package layout_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/cpython/layout/layouttest"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// selfReport is what testdata/selfreport.py prints.
type selfReport struct {
	Version                                []int
	Code                                   uint64
	CodeType                               uint64 `json:"code_type"`
	CoFilename                             uint64 `json:"co_filename"`
	CoName                                 uint64 `json:"co_name"`
	CoConsts                               uint64 `json:"co_consts"`
	CoNames                                uint64 `json:"co_names"`
	CoFirstlineno                          int64  `json:"co_firstlineno"`
	CoArgcount                             int64  `json:"co_argcount"`
	CoFlags                                int64  `json:"co_flags"`
	Frame, Tuple                           uint64
	TupleType                              uint64 `json:"tuple_type"`
	Tuple0                                 uint64
	List, List0, Float, Mod, Moddict, Dict uint64
	Dictlen                                int64
	Str                                    uint64
	Basicsize                              map[string]int
	SizeofDigit                            int `json:"sizeof_digit"`
	Modules, Sysdict, Builtins             uint64
	Ident                                  uint64
	NativeID                               uint64 `json:"native_id"`
	Tstate, Interp, Runtime                uint64
}

// startSelfReport starts the fixture under in and decodes its report.
func startSelfReport(t *testing.T, in testenv.Interp) (*testenv.Target, *selfReport, *layouttest.Mem) {
	t.Helper()
	src, err := os.ReadFile("testdata/selfreport.py")
	if err != nil {
		t.Fatal(err)
	}
	tg := testenv.Start(t, in, string(src))
	var line string
	for _, l := range tg.Stdout() {
		if strings.HasPrefix(l, "READY ") {
			line = strings.TrimPrefix(l, "READY ")
		}
	}
	var rep selfReport
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("decoding report %q: %v", line, err)
	}
	mem, err := layouttest.OpenMem(tg.PID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return tg, &rep, mem
}

// layoutOf returns the generated table, or for a version without one
// the layout decoded from the target's debug offsets.
func layoutOf(t *testing.T, in testenv.Interp, rep *selfReport, mem memory.Reader) *layout.Layout {
	t.Helper()
	l, err := layout.For(in.Major, in.Minor)
	if errors.Is(err, layout.ErrNoTable) && rep.Runtime != 0 {
		l, err = layout.FromDebugOffsets(mem, rep.Runtime)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLiveCrossCheck compares the table with what a running interpreter
// reports about its own objects (id() arithmetic, __basicsize__,
// sys.int_info, ctypes for the thread and interpreter states).
func TestLiveCrossCheck(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg, rep, mem := startSelfReport(t, in)
		l := layoutOf(t, in, rep, mem)
		ptr := func(what string, addr uint64, want uint64) {
			t.Helper()
			got, err := memory.Ptr(mem, addr)
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else if got != want {
				t.Errorf("%s: read %#x, want %#x", what, got, want)
			}
		}
		i32 := func(what string, addr uint64, want int64) {
			t.Helper()
			got, err := memory.I32(mem, addr)
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else if int64(got) != want {
				t.Errorf("%s: read %d, want %d", what, got, want)
			}
		}
		off := func(o int) uint64 {
			t.Helper()
			if o < 0 {
				t.Fatalf("needed offset is -1")
			}
			return uint64(o)
		}
		ptr("code.ob_type", rep.Code+off(l.ObjectObType), rep.CodeType)
		ptr("co_filename", rep.Code+off(l.CodeCoFilename), rep.CoFilename)
		ptr("co_name", rep.Code+off(l.CodeCoName), rep.CoName)
		ptr("co_consts", rep.Code+off(l.CodeCoConsts), rep.CoConsts)
		ptr("co_names", rep.Code+off(l.CodeCoNames), rep.CoNames)
		i32("co_firstlineno", rep.Code+off(l.CodeCoFirstlineno), rep.CoFirstlineno)
		i32("co_argcount", rep.Code+off(l.CodeCoArgcount), rep.CoArgcount)
		i32("co_flags", rep.Code+off(l.CodeCoFlags), rep.CoFlags)
		if in.AtLeast(3, 11) {
			iframe, err := memory.Ptr(mem, rep.Frame+off(l.FrameFFrame))
			if err != nil {
				t.Fatal(err)
			}
			codeOff := l.InterpFrameFCode
			if codeOff < 0 {
				codeOff = l.InterpFrameFExecutable
			}
			got, err := memory.Ptr(mem, iframe+uint64(codeOff))
			if err != nil || got&^7 != rep.Code {
				t.Errorf("frame code: read %#x (%v), want %#x", got, err, rep.Code)
			}
		} else {
			ptr("f_code", rep.Frame+off(l.FrameFCode), rep.Code)
		}
		ptr("tuple.ob_type", rep.Tuple+off(l.ObjectObType), rep.TupleType)
		ptr("tuple.ob_item[0]", rep.Tuple+off(l.TupleObItem), rep.Tuple0)
		i32("tuple.ob_size", rep.Tuple+off(l.VarObjectObSize), 2)
		items, err := memory.Ptr(mem, rep.List+off(l.ListObItem))
		if err != nil {
			t.Fatal(err)
		}
		ptr("list.ob_item[0]", items, rep.List0)
		if v, err := memory.U64(mem, rep.Float+off(l.FloatObFval)); err != nil || math.Float64frombits(v) != 1.5 {
			t.Errorf("float.ob_fval: %v %v", math.Float64frombits(v), err)
		}
		ptr("module.md_dict", rep.Mod+off(l.ModuleMdDict), rep.Moddict)
		i32("dict.ma_used", rep.Dict+off(l.DictMaUsed), rep.Dictlen)
		strData := l.SizeofPyASCIIObject
		if in.Major == 2 {
			strData = l.StringObSval
		}
		if b, err := memory.Bytes(mem, rep.Str+off(strData), 5, 5); err != nil || string(b) != "hello" {
			t.Errorf("str data: %q %v", b, err)
		}
		if in.Major == 3 {
			i32("str length", rep.Str+off(l.ASCIIObjectLength), 5)
		}
		codeSize := l.SizeofPyCodeObject
		if l.CodeCoCodeAdaptive >= 0 {
			codeSize = l.CodeCoCodeAdaptive // 3.11+: variable size, bytecode inline
		}
		for name, want := range map[string]int{
			"object": l.SizeofPyObject, "float": l.FloatObFval + 8,
			"tuple": l.TupleObItem, "code": codeSize,
		} {
			if rep.Basicsize[name] != want {
				t.Errorf("%s.__basicsize__ = %d, table says %d", name, rep.Basicsize[name], want)
			}
		}
		if rep.SizeofDigit != l.SizeofDigit {
			t.Errorf("sizeof(digit) = %d, table says %d", rep.SizeofDigit, l.SizeofDigit)
		}
		if rep.Tstate == 0 {
			testenv.Skipf(t, "%s has no ctypes: thread and interpreter states not checked", in.Label)
		}
		ptr("tstate.interp", rep.Tstate+off(l.TstateInterp), rep.Interp)
		ptr("tstate.thread_id", rep.Tstate+off(l.TstateThreadID), rep.Ident)
		if l.TstateNativeThreadID >= 0 {
			ptr("tstate.native_thread_id", rep.Tstate+uint64(l.TstateNativeThreadID), rep.NativeID)
		}
		ptr("interp.modules", rep.Interp+off(l.InterpModules), rep.Modules)
		ptr("interp.sysdict", rep.Interp+off(l.InterpSysdict), rep.Sysdict)
		ptr("interp.builtins", rep.Interp+off(l.InterpBuiltins), rep.Builtins)
		ptr("interp.tstate_head", rep.Interp+off(l.InterpTstateHead), rep.Tstate)
		if l.RuntimeInterpretersHead >= 0 {
			if rep.Runtime == 0 {
				t.Errorf("no _PyRuntime reported by %s", in.Label)
			} else {
				ptr("_PyRuntime.interpreters.head", rep.Runtime+uint64(l.RuntimeInterpretersHead), rep.Interp)
				ptr("_PyRuntime.interpreters.main", rep.Runtime+off(l.RuntimeInterpretersMain), rep.Interp)
			}
			img, err := layouttest.FindImage(tg.PID)
			if err != nil {
				t.Fatal(err)
			}
			if a := img.Symbols["_PyRuntime"]; a != rep.Runtime {
				t.Errorf("ELF symbol _PyRuntime at %#x, ctypes says %#x", a, rep.Runtime)
			}
		}
		if l.RuntimeMainThread >= 0 {
			ptr("_PyRuntime.main_thread", rep.Runtime+uint64(l.RuntimeMainThread), rep.Ident)
		}
		if l.InterpThreadsMain >= 0 {
			ptr("interp.threads.main", rep.Interp+uint64(l.InterpThreadsMain), rep.Tstate)
		}
		if err := tg.Healthy(); err != nil {
			t.Error(err)
		}
	})
}

// TestDebugOffsetsMatchTable decodes _Py_DebugOffsets from live 3.13+
// processes and compares every field it carries with the generated table
// (and, for a version without one, the hand-checked part too).
func TestDebugOffsetsMatchTable(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 13) {
			testenv.Skipf(t, "%s has no _Py_DebugOffsets (3.13+)", in.Label)
		}
		_, rep, mem := startSelfReport(t, in)
		if rep.Runtime == 0 {
			testenv.Skipf(t, "%s reported no _PyRuntime address (no ctypes)", in.Label)
		}
		d, err := layout.ReadDebugOffsets(mem, rep.Runtime)
		if err != nil {
			t.Fatal(err)
		}
		if d.Major() != rep.Version[0] || d.Minor() != rep.Version[1] || d.Micro() != rep.Version[2] {
			t.Errorf("debug offsets version %d.%d.%d, interpreter %v", d.Major(), d.Minor(), d.Micro(), rep.Version)
		}
		got, err := d.Layout()
		if err != nil {
			t.Fatal(err)
		}
		want, err := layout.For(in.Major, in.Minor)
		if errors.Is(err, layout.ErrNoTable) {
			testenv.Skipf(t, "no generated table for %s to compare with", in.Label)
		}
		if err != nil {
			t.Fatal(err)
		}
		// Only the fields the debug offsets carry (or the hand table
		// fills) are compared: compare the decoded layout without base.
		only, err := layout.DebugOnly(d)
		if err != nil {
			t.Fatal(err)
		}
		wf, gf := want.Fields(), got.Fields()
		n := 0
		for name, v := range only.Fields() {
			if v < 0 {
				continue
			}
			n++
			if wf[name] != v {
				t.Errorf("%s: debug offsets say %d, table %d", name, v, wf[name])
			}
			if gf[name] != v {
				t.Errorf("%s: merged layout has %d, debug offsets %d", name, gf[name], v)
			}
		}
		if n < 40 {
			t.Errorf("only %d fields decoded", n)
		}
		t.Logf("%d fields of %s agree", n, in.Label)
	})
}
