package layout

import (
	"errors"
	"fmt"

	"github.com/pyglass/pyglass/memory"
)

// DebugCookie starts _Py_DebugOffsets, itself the start of _PyRuntime,
// in CPython 3.13+.
const DebugCookie = "xdebugpy"

var (
	// ErrNoDebugOffsets is returned when the memory at _PyRuntime does
	// not start with DebugCookie.
	ErrNoDebugOffsets = errors.New("no _Py_DebugOffsets cookie")
	// ErrFreeThreaded is returned for free-threaded (no-GIL) builds,
	// which pyglass does not read.
	ErrFreeThreaded = errors.New("free-threaded CPython build")
	// ErrBadDebugOffsets is returned when decoded offsets fail the
	// sanity checks (a wrong address or an unknown struct layout).
	ErrBadDebugOffsets = errors.New("implausible _Py_DebugOffsets")
)

// debugHeader is sizeof(cookie) + version + free_threaded.
const debugHeader = 24

// debugFields lists, per minor version, the uint64 members of
// _Py_DebugOffsets after the header, in declaration order.
// 3.13: Include/internal/pycore_runtime.h (v3.13.0).
// 3.14: Include/internal/pycore_debug_offsets.h (v3.14).
// 3.15: the same header (v3.15.2, Debian's libpython3.15-dev).
var debugFields = map[int][]string{
	13: {
		"runtime_state.size", "runtime_state.finalizing", "runtime_state.interpreters_head",
		"interpreter_state.size", "interpreter_state.id", "interpreter_state.next",
		"interpreter_state.threads_head", "interpreter_state.gc", "interpreter_state.imports_modules",
		"interpreter_state.sysdict", "interpreter_state.builtins", "interpreter_state.ceval_gil",
		"interpreter_state.gil_runtime_state", "interpreter_state.gil_runtime_state_enabled",
		"interpreter_state.gil_runtime_state_locked", "interpreter_state.gil_runtime_state_holder",
		"thread_state.size", "thread_state.prev", "thread_state.next", "thread_state.interp",
		"thread_state.current_frame", "thread_state.thread_id", "thread_state.native_thread_id",
		"thread_state.datastack_chunk", "thread_state.status",
		"interpreter_frame.size", "interpreter_frame.previous", "interpreter_frame.executable",
		"interpreter_frame.instr_ptr", "interpreter_frame.localsplus", "interpreter_frame.owner",
		"code_object.size", "code_object.filename", "code_object.name", "code_object.qualname",
		"code_object.linetable", "code_object.firstlineno", "code_object.argcount",
		"code_object.localsplusnames", "code_object.localspluskinds", "code_object.co_code_adaptive",
		"pyobject.size", "pyobject.ob_type",
		"type_object.size", "type_object.tp_name", "type_object.tp_repr", "type_object.tp_flags",
		"tuple_object.size", "tuple_object.ob_item", "tuple_object.ob_size",
		"list_object.size", "list_object.ob_item", "list_object.ob_size",
		"dict_object.size", "dict_object.ma_keys", "dict_object.ma_values",
		"float_object.size", "float_object.ob_fval",
		"long_object.size", "long_object.lv_tag", "long_object.ob_digit",
		"bytes_object.size", "bytes_object.ob_size", "bytes_object.ob_sval",
		"unicode_object.size", "unicode_object.state", "unicode_object.length", "unicode_object.asciiobject_size",
		"gc.size", "gc.collecting",
	},
	14: {
		"runtime_state.size", "runtime_state.finalizing", "runtime_state.interpreters_head",
		"interpreter_state.size", "interpreter_state.id", "interpreter_state.next",
		"interpreter_state.threads_head", "interpreter_state.threads_main", "interpreter_state.gc",
		"interpreter_state.imports_modules", "interpreter_state.sysdict", "interpreter_state.builtins",
		"interpreter_state.ceval_gil", "interpreter_state.gil_runtime_state",
		"interpreter_state.gil_runtime_state_enabled", "interpreter_state.gil_runtime_state_locked",
		"interpreter_state.gil_runtime_state_holder", "interpreter_state.code_object_generation",
		"interpreter_state.tlbc_generation",
		"thread_state.size", "thread_state.prev", "thread_state.next", "thread_state.interp",
		"thread_state.current_frame", "thread_state.thread_id", "thread_state.native_thread_id",
		"thread_state.datastack_chunk", "thread_state.status",
		"interpreter_frame.size", "interpreter_frame.previous", "interpreter_frame.executable",
		"interpreter_frame.instr_ptr", "interpreter_frame.localsplus", "interpreter_frame.owner",
		"interpreter_frame.stackpointer", "interpreter_frame.tlbc_index",
		"code_object.size", "code_object.filename", "code_object.name", "code_object.qualname",
		"code_object.linetable", "code_object.firstlineno", "code_object.argcount",
		"code_object.localsplusnames", "code_object.localspluskinds", "code_object.co_code_adaptive",
		"code_object.co_tlbc",
		"pyobject.size", "pyobject.ob_type",
		"type_object.size", "type_object.tp_name", "type_object.tp_repr", "type_object.tp_flags",
		"tuple_object.size", "tuple_object.ob_item", "tuple_object.ob_size",
		"list_object.size", "list_object.ob_item", "list_object.ob_size",
		"set_object.size", "set_object.used", "set_object.table", "set_object.mask",
		"dict_object.size", "dict_object.ma_keys", "dict_object.ma_values",
		"float_object.size", "float_object.ob_fval",
		"long_object.size", "long_object.lv_tag", "long_object.ob_digit",
		"bytes_object.size", "bytes_object.ob_size", "bytes_object.ob_sval",
		"unicode_object.size", "unicode_object.state", "unicode_object.length", "unicode_object.asciiobject_size",
		"gc.size", "gc.collecting",
		"gen_object.size", "gen_object.gi_name", "gen_object.gi_iframe", "gen_object.gi_frame_state",
		"llist_node.next", "llist_node.prev",
		"debugger_support.eval_breaker", "debugger_support.remote_debugger_support",
		"debugger_support.remote_debugging_enabled", "debugger_support.debugger_pending_call",
		"debugger_support.debugger_script_path", "debugger_support.debugger_script_path_size",
	}, 15: {
		"runtime_state.size", "runtime_state.finalizing", "runtime_state.interpreters_head",
		"interpreter_state.size", "interpreter_state.id", "interpreter_state.next",
		"interpreter_state.threads_head", "interpreter_state.threads_main", "interpreter_state.gc",
		"interpreter_state.imports_modules", "interpreter_state.sysdict", "interpreter_state.builtins",
		"interpreter_state.ceval_gil", "interpreter_state.gil_runtime_state",
		"interpreter_state.gil_runtime_state_enabled", "interpreter_state.gil_runtime_state_locked",
		"interpreter_state.gil_runtime_state_holder", "interpreter_state.code_object_generation",
		"interpreter_state.tlbc_generation",
		"thread_state.size", "thread_state.prev", "thread_state.next", "thread_state.interp",
		"thread_state.current_frame", "thread_state.base_frame", "thread_state.last_profiled_frame",
		"thread_state.last_profiled_frame_seq", "thread_state.thread_id", "thread_state.native_thread_id",
		"thread_state.datastack_chunk", "thread_state.status", "thread_state.holds_gil",
		"thread_state.gil_requested", "thread_state.current_exception", "thread_state.exc_state",
		"err_stackitem.exc_value",
		"interpreter_frame.size", "interpreter_frame.previous", "interpreter_frame.executable",
		"interpreter_frame.instr_ptr", "interpreter_frame.localsplus", "interpreter_frame.owner",
		"interpreter_frame.stackpointer", "interpreter_frame.tlbc_index",
		"code_object.size", "code_object.filename", "code_object.name", "code_object.qualname",
		"code_object.linetable", "code_object.firstlineno", "code_object.argcount",
		"code_object.localsplusnames", "code_object.localspluskinds", "code_object.co_code_adaptive",
		"code_object.co_tlbc",
		"pyobject.size", "pyobject.ob_type",
		"type_object.size", "type_object.tp_name", "type_object.tp_repr", "type_object.tp_flags",
		"type_object.tp_basicsize", "type_object.tp_dictoffset",
		"heap_type_object.size", "heap_type_object.ht_cached_keys",
		"tuple_object.size", "tuple_object.ob_item", "tuple_object.ob_size",
		"list_object.size", "list_object.ob_item", "list_object.ob_size",
		"set_object.size", "set_object.used", "set_object.table", "set_object.mask",
		"dict_object.size", "dict_object.ma_keys", "dict_object.ma_values",
		"float_object.size", "float_object.ob_fval",
		"long_object.size", "long_object.lv_tag", "long_object.ob_digit",
		"bytes_object.size", "bytes_object.ob_size", "bytes_object.ob_sval",
		"unicode_object.size", "unicode_object.state", "unicode_object.length", "unicode_object.asciiobject_size",
		"unicode_object.compactunicodeobject_size",
		"gc.size", "gc.collecting", "gc.frame", "gc.generation_stats_size", "gc.generation_stats",
		"gen_object.size", "gen_object.gi_name", "gen_object.gi_iframe", "gen_object.gi_frame_state",
		"llist_node.next", "llist_node.prev",
		"debugger_support.eval_breaker", "debugger_support.remote_debugger_support",
		"debugger_support.remote_debugging_enabled", "debugger_support.debugger_pending_call",
		"debugger_support.debugger_script_path", "debugger_support.debugger_script_path_size",
	},
}

// debugToLayout maps _Py_DebugOffsets members to Layout fields.
var debugToLayout = map[string]string{
	"runtime_state.interpreters_head":   "RuntimeInterpretersHead",
	"interpreter_state.id":              "InterpID",
	"interpreter_state.next":            "InterpNext",
	"interpreter_state.threads_head":    "InterpTstateHead",
	"interpreter_state.threads_main":    "InterpThreadsMain",
	"interpreter_state.imports_modules": "InterpModules",
	"interpreter_state.sysdict":         "InterpSysdict",
	"interpreter_state.builtins":        "InterpBuiltins",
	"interpreter_state.ceval_gil":       "InterpCevalGil",
	"thread_state.prev":                 "TstatePrev",
	"thread_state.next":                 "TstateNext",
	"thread_state.interp":               "TstateInterp",
	"thread_state.current_frame":        "TstateCurrentFrame",
	"thread_state.thread_id":            "TstateThreadID",
	"thread_state.native_thread_id":     "TstateNativeThreadID",
	"interpreter_frame.previous":        "InterpFramePrevious",
	"interpreter_frame.executable":      "InterpFrameFExecutable",
	"interpreter_frame.instr_ptr":       "InterpFrameInstrPtr",
	"interpreter_frame.localsplus":      "InterpFrameLocalsplus",
	"interpreter_frame.owner":           "InterpFrameOwner",
	"interpreter_frame.stackpointer":    "InterpFrameStackpointer",
	"code_object.size":                  "SizeofPyCodeObject",
	"code_object.filename":              "CodeCoFilename",
	"code_object.name":                  "CodeCoName",
	"code_object.qualname":              "CodeCoQualname",
	"code_object.linetable":             "CodeCoLinetable",
	"code_object.firstlineno":           "CodeCoFirstlineno",
	"code_object.argcount":              "CodeCoArgcount",
	"code_object.localsplusnames":       "CodeCoLocalsplusnames",
	"code_object.localspluskinds":       "CodeCoLocalspluskinds",
	"code_object.co_code_adaptive":      "CodeCoCodeAdaptive",
	"pyobject.size":                     "SizeofPyObject",
	"pyobject.ob_type":                  "ObjectObType",
	"type_object.tp_name":               "TypeTpName",
	"type_object.tp_flags":              "TypeTpFlags",
	"tuple_object.ob_item":              "TupleObItem",
	"tuple_object.ob_size":              "VarObjectObSize",
	"list_object.ob_item":               "ListObItem",
	"dict_object.ma_keys":               "DictMaKeys",
	"dict_object.ma_values":             "DictMaValues",
	"float_object.ob_fval":              "FloatObFval",
	"long_object.lv_tag":                "LongLvTag",
	"long_object.ob_digit":              "LongObDigit",
	"bytes_object.ob_sval":              "BytesObSval",
	"unicode_object.state":              "ASCIIObjectState",
	"unicode_object.length":             "ASCIIObjectLength",
	"unicode_object.asciiobject_size":   "SizeofPyASCIIObject",
}

// DebugOffsets is a decoded _Py_DebugOffsets.
type DebugOffsets struct {
	// Version is PY_VERSION_HEX of the target.
	Version uint64
	// FreeThreaded is set for Py_GIL_DISABLED builds.
	FreeThreaded bool
	// Values holds every member by "group.member" name.
	Values map[string]uint64
}

// Major returns the major version from Version.
func (d *DebugOffsets) Major() int { return int(d.Version >> 24 & 0xff) }

// Minor returns the minor version from Version.
func (d *DebugOffsets) Minor() int { return int(d.Version >> 16 & 0xff) }

// Micro returns the micro version from Version.
func (d *DebugOffsets) Micro() int { return int(d.Version >> 8 & 0xff) }

// ReadDebugOffsets decodes the _Py_DebugOffsets at addr (the start of
// _PyRuntime). It returns ErrNoDebugOffsets without the cookie and
// ErrUnsupported for a version whose struct it does not know.
func ReadDebugOffsets(r memory.Reader, addr uint64) (*DebugOffsets, error) {
	var hdr [debugHeader]byte
	if err := memory.Read(r, addr, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading debug offsets header: %w", err)
	}
	if string(hdr[:8]) != DebugCookie {
		return nil, fmt.Errorf("at %#x: %w", addr, ErrNoDebugOffsets)
	}
	d := &DebugOffsets{
		Version:      memory.Order.Uint64(hdr[8:]),
		FreeThreaded: memory.Order.Uint64(hdr[16:]) != 0,
		Values:       map[string]uint64{},
	}
	names, ok := debugFields[d.Minor()]
	if d.Major() != 3 || !ok {
		return nil, fmt.Errorf("debug offsets of version %#x: %w", d.Version, ErrUnsupported)
	}
	buf := make([]byte, 8*len(names))
	if err := memory.Read(r, addr+debugHeader, buf); err != nil {
		return nil, fmt.Errorf("reading debug offsets: %w", err)
	}
	for i, n := range names {
		d.Values[n] = memory.Order.Uint64(buf[8*i:])
	}
	return d, nil
}

// maxStructSize bounds every size and offset read from the target:
// CPython's largest structure (PyInterpreterState) is well below it.
const maxStructSize = 1 << 20

// check rejects values that cannot come from a real CPython.
func (d *DebugOffsets) check() error {
	for n, v := range d.Values {
		if v > maxStructSize {
			return fmt.Errorf("%s = %d: %w", n, v, ErrBadDebugOffsets)
		}
	}
	want := map[string]uint64{"pyobject.ob_type": 8, "pyobject.size": 16, "tuple_object.ob_size": 16}
	for n, w := range want {
		if d.Values[n] != w {
			return fmt.Errorf("%s = %d, want %d: %w", n, d.Values[n], w, ErrBadDebugOffsets)
		}
	}
	return nil
}

// Layout builds a Layout from the debug offsets. Fields the debug
// offsets lack come from the generated table of the same version when
// there is one, else from the hand-checked table (hand.go); fields known
// by neither are -1.
func (d *DebugOffsets) Layout() (*Layout, error) {
	if d.FreeThreaded {
		return nil, ErrFreeThreaded
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	major, minor := d.Major(), d.Minor()
	l, err := For(major, minor)
	if errors.Is(err, ErrNoTable) {
		l, err = handLayout(d)
	}
	if err != nil {
		return nil, err
	}
	if err := l.set(d.fields()); err != nil {
		return nil, err
	}
	l.Major, l.Minor = major, minor
	return l, nil
}

// FromDebugOffsets reads _Py_DebugOffsets at runtime (the address of
// _PyRuntime) and returns the layout it describes. See
// DebugOffsets.Layout for the fields it does not carry.
func FromDebugOffsets(r memory.Reader, runtime uint64) (*Layout, error) {
	d, err := ReadDebugOffsets(r, runtime)
	if err != nil {
		return nil, err
	}
	return d.Layout()
}

// DebugOnly returns the layout made only of what d carries, plus the
// hand-checked fields of its version (3.14) whose anchors match; every
// other field is -1. Tests compare it with the generated tables.
func DebugOnly(d *DebugOffsets) (*Layout, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	l := New()
	if h, err := handLayout(d); err == nil {
		l = h
	}
	if err := l.set(d.fields()); err != nil {
		return nil, err
	}
	l.Major, l.Minor = d.Major(), d.Minor()
	return l, nil
}

// fields returns the Layout fields the debug offsets carry.
func (d *DebugOffsets) fields() map[string]int {
	m := map[string]int{}
	for dn, ln := range debugToLayout {
		if v, ok := d.Values[dn]; ok {
			m[ln] = int(v)
		}
	}
	v := d.Values
	if base, ok := v["interpreter_state.gil_runtime_state"]; ok {
		m["GilLocked"] = int(v["interpreter_state.gil_runtime_state_locked"] - base)
		m["GilLastHolder"] = int(v["interpreter_state.gil_runtime_state_holder"] - base)
	}
	return m
}
