package layout

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

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
var debugFields = sync.OnceValue(func() map[int][]string {
	return map[int][]string{
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
})

// debugToLayout maps _Py_DebugOffsets members to Layout fields.
var debugToLayout = sync.OnceValue(func() map[string]string {
	return map[string]string{
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
})

// DebugOffsets is a decoded _Py_DebugOffsets.
type DebugOffsets struct {
	// Version is PY_VERSION_HEX of the target.
	Version uint64
	// FreeThreaded is set for Py_GIL_DISABLED builds.
	FreeThreaded bool
	// Newer is set when the version is newer than every one whose
	// _Py_DebugOffsets pyglass knows: the members were decoded in the
	// order of the newest known version (see DecodeDebugOffsets).
	Newer bool
	// Values holds every member by "group.member" name.
	Values map[string]uint64
}

// Major returns the major version from Version.
func (d *DebugOffsets) Major() int { return int(d.Version >> 24 & 0xff) }

// Minor returns the minor version from Version.
func (d *DebugOffsets) Minor() int { return int(d.Version >> 16 & 0xff) }

// Micro returns the micro version from Version.
func (d *DebugOffsets) Micro() int { return int(d.Version >> 8 & 0xff) }

// newestDebugMinor is the newest 3.x minor whose _Py_DebugOffsets
// members pyglass knows.
func newestDebugMinor() int {
	n := 0
	for m := range debugFields() {
		n = max(n, m)
	}
	return n
}

// DebugMembers returns the members of _Py_DebugOffsets of 3.minor
// after its header, in declaration order (nil for an unknown minor), and
// the Layout field each one sets ("" for none).
func DebugMembers(minor int) (members, fields []string) {
	for _, n := range debugFields()[minor] {
		members = append(members, n)
		fields = append(fields, debugToLayout()[n])
	}
	return members, fields
}

// NewestDebugMinor is the newest 3.x minor whose _Py_DebugOffsets
// pyglass knows member by member.
func NewestDebugMinor() int { return newestDebugMinor() }

// DebugOffsetsSize returns how many bytes of _Py_DebugOffsets
// DecodeDebugOffsets needs for 3.minor (a newer minor is read as the
// newest known one); 0 for a minor before 3.13.
func DebugOffsetsSize(minor int) int {
	names, ok := debugFields()[minor]
	if !ok && minor > newestDebugMinor() {
		names = debugFields()[newestDebugMinor()]
	}
	if len(names) == 0 {
		return 0
	}
	return debugHeader + 8*len(names)
}

// ReadDebugOffsets decodes the _Py_DebugOffsets at addr (the start of
// _PyRuntime). It returns ErrNoDebugOffsets without the cookie and
// ErrUnsupported for a version whose struct it does not know, a newer
// one included (only ForTarget reads those, to read the target, never to
// write into it).
func ReadDebugOffsets(r memory.Reader, addr uint64) (*DebugOffsets, error) {
	d, err := readDebugOffsets(r, addr)
	if err == nil && d.Newer {
		return nil, fmt.Errorf("debug offsets of version %#x, newer than 3.%d: %w", d.Version, newestDebugMinor(), ErrUnsupported)
	}
	return d, err
}

// readDebugOffsets is ReadDebugOffsets, newer versions decoded as
// DecodeDebugOffsets does.
func readDebugOffsets(r memory.Reader, addr uint64) (*DebugOffsets, error) {
	var hdr [debugHeader]byte
	if err := memory.Read(r, addr, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading debug offsets header: %w", err)
	}
	if string(hdr[:8]) != DebugCookie {
		return nil, fmt.Errorf("at %#x: %w", addr, ErrNoDebugOffsets)
	}
	n := DebugOffsetsSize(int(memory.Order.Uint64(hdr[8:]) >> 16 & 0xff))
	if n == 0 {
		return DecodeDebugOffsets(hdr[:])
	}
	buf := make([]byte, n)
	if err := memory.Read(r, addr, buf); err != nil {
		return nil, fmt.Errorf("reading debug offsets: %w", err)
	}
	return DecodeDebugOffsets(buf)
}

// DecodeDebugOffsets decodes a copy of _Py_DebugOffsets (its first
// DebugOffsetsSize bytes). A 3.x version newer than every known one is
// decoded with the members of the newest known version and marked Newer:
// whether that reading holds is for Layout's checks to tell. It returns
// ErrNoDebugOffsets without the cookie and ErrUnsupported for another
// major version or a minor before 3.13.
func DecodeDebugOffsets(b []byte) (*DebugOffsets, error) {
	if len(b) < debugHeader || string(b[:8]) != DebugCookie {
		return nil, ErrNoDebugOffsets
	}
	d := &DebugOffsets{
		Version:      memory.Order.Uint64(b[8:]),
		FreeThreaded: memory.Order.Uint64(b[16:]) != 0,
		Values:       map[string]uint64{},
	}
	names, ok := debugFields()[d.Minor()]
	if !ok && d.Major() == 3 && d.Minor() > newestDebugMinor() && d.Version>>32 == 0 {
		names, ok, d.Newer = debugFields()[newestDebugMinor()], true, true
	}
	if d.Major() != 3 || !ok {
		return nil, fmt.Errorf("debug offsets of version %#x: %w", d.Version, ErrUnsupported)
	}
	if len(b) < debugHeader+8*len(names) {
		return nil, fmt.Errorf("debug offsets of %d.%d: %d bytes, want %d: %w", d.Major(), d.Minor(),
			len(b), debugHeader+8*len(names), memory.ErrShortRead)
	}
	for i, n := range names {
		d.Values[n] = memory.Order.Uint64(b[debugHeader+8*i:])
	}
	return d, nil
}

// maxStructSize bounds every size and offset read from the target:
// CPython's largest structure (_PyRuntimeState, about 300 KiB on 3.14)
// is well below it.
const maxStructSize = 1 << 20

// debugWidth is the width of the members narrower than 8 bytes, or,
// for 0, members that are sizes (at most their group's size).
var debugWidth = sync.OnceValue(func() map[string]uint64 {
	return map[string]uint64{
		"interpreter_frame.owner": 1, "gen_object.gi_frame_state": 1,
		"code_object.firstlineno": 4, "code_object.argcount": 4, "unicode_object.state": 4,
		"gc.collecting": 4, "thread_state.status": 4, "interpreter_frame.tlbc_index": 4,
		"interpreter_state.gil_runtime_state_enabled": 4, "interpreter_state.gil_runtime_state_locked": 4,
		"unicode_object.asciiobject_size": 0, "unicode_object.compactunicodeobject_size": 0,
	}
})

// debugOtherSize are members that are the size of another structure than
// their group's (3.15: gc.generation_stats_size is sizeof(struct
// gc_stats), which the runtime state points to): only bounded by
// maxStructSize.
var debugOtherSize = map[string]bool{"gc.generation_stats_size": true}

// check rejects values that cannot come from a real CPython: a member
// that does not fit in its group's structure (a group with a "size"
// member), a size that is implausible, a GIL member outside the GIL.
func (d *DebugOffsets) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), ErrBadDebugOffsets)
	}
	names := make([]string, 0, len(d.Values))
	for n := range d.Values {
		names = append(names, n)
	}
	sort.Strings(names) // report the same member first every time
	for _, n := range names {
		v := d.Values[n]
		if v > maxStructSize {
			return bad("%s = %d", n, v)
		}
		group, member, _ := strings.Cut(n, ".")
		size, sized := d.Values[group+".size"]
		switch {
		case member == "size":
			if v < 8 {
				return bad("%s = %d", n, v)
			}
		case debugOtherSize[n]:
		case sized:
			w, ok := debugWidth()[n]
			if !ok {
				w = 8
			}
			if v+w > size {
				return bad("%s = %d (%d bytes) outside %s.size = %d", n, v, w, group, size)
			}
		}
	}
	want := map[string]uint64{"pyobject.ob_type": 8, "pyobject.size": 16, "tuple_object.ob_size": 16}
	for _, n := range []string{"pyobject.ob_type", "pyobject.size", "tuple_object.ob_size"} {
		if d.Values[n] != want[n] {
			return bad("%s = %d, want %d", n, d.Values[n], want[n])
		}
	}
	if base, ok := d.Values["interpreter_state.gil_runtime_state"]; ok {
		for _, n := range []string{"interpreter_state.gil_runtime_state_locked", "interpreter_state.gil_runtime_state_holder"} {
			if v := d.Values[n]; v < base || v-base >= 256 {
				return bad("%s = %d, outside the GIL at %d", n, v, base)
			}
		}
	}
	return nil
}

// Layout builds a Layout from the debug offsets. Fields the debug
// offsets lack come from the generated table of the same version when
// there is one, else from the hand-checked table (hand.go); fields known
// by neither are -1. The result is checked (Validate); a layout that
// fails is an error matching ErrBadDebugOffsets.
func (d *DebugOffsets) Layout() (*Layout, error) {
	if d.FreeThreaded {
		return nil, fmt.Errorf("Python %d.%d: %w", d.Major(), d.Minor(), ErrFreeThreaded)
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	major, minor := d.Major(), d.Minor()
	l, err := d.base()
	if err != nil {
		return nil, err
	}
	if err := l.set(d.fields()); err != nil {
		return nil, err
	}
	l.Major, l.Minor = major, minor
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDebugOffsets, err)
	}
	return l, nil
}

// base returns the layout the debug offsets are laid over: the generated
// table of the version (the build variant whose carried fields agree,
// when there are several), else the hand-checked groups whose anchors
// agree; for a version newer than every table, the newest table when
// every field the debug offsets carry agrees with it.
func (d *DebugOffsets) base() (*Layout, error) {
	if d.Newer {
		newest, err := For(3, MaxMinor3)
		if err == nil && len(d.Disagree(newest)) == 0 {
			return newest, nil
		}
		return d.handGroups()
	}
	l, err := d.matchingTable()
	if errors.Is(err, ErrNoTable) {
		l, err = handLayout(d)
	}
	return l, err
}

// matchingTable returns the generated table of d's version, preferring
// a build variant ("3.13-debian") whose fields agree with d.
func (d *DebugOffsets) matchingTable() (*Layout, error) {
	l, err := For(d.Major(), d.Minor())
	if err != nil || len(d.Disagree(l)) == 0 {
		return l, err
	}
	prefix := fmt.Sprintf("%d.%d-", d.Major(), d.Minor())
	for _, k := range Keys() {
		if strings.HasPrefix(k, prefix) {
			if v, err := ForKey(k); err == nil && len(d.Disagree(v)) == 0 {
				return v, nil
			}
		}
	}
	return l, nil
}

// Disagree lists, sorted, the fields the debug offsets carry whose value
// in l differs ("Field: debug offsets N, table M").
func (d *DebugOffsets) Disagree(l *Layout) []string {
	have := l.Fields()
	var out []string
	for name, v := range d.fields() {
		if have[name] != v {
			out = append(out, fmt.Sprintf("%s: debug offsets %d, table %d", name, v, have[name]))
		}
	}
	sort.Strings(out)
	return out
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
	for dn, ln := range debugToLayout() {
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

// ForTarget returns the layout to read a CPython major.minor target
// with, and the warnings (one line each) its user should see about that
// choice. runtime is the address of _PyRuntime, 0 when unknown.
//
// Before 3.13 (or without runtime) it is the generated table. From 3.13
// on it is the layout the target's _Py_DebugOffsets describe, checked
// (Layout) and compared with the generated table of the version: when
// they are unusable, describe another version or disagree with the
// table, the table is used and a warning says so. A version newer than
// every table is read with its own debug offsets when they pass the
// checks, with a warning that it is newer than pyglass was tested on;
// else it is refused (ErrUnsupported). A free-threaded build is refused
// with ErrFreeThreaded.
func ForTarget(r memory.Reader, runtime uint64, major, minor int) (*Layout, []string, error) {
	newer := major == 3 && minor > MaxMinor3
	if major != 3 || minor < 13 || runtime == 0 {
		l, err := For(major, minor)
		if err != nil && newer {
			err = fmt.Errorf("%w (pyglass knows up to 3.%d; the address of _PyRuntime, where newer versions describe themselves, is unknown)", err, MaxMinor3)
		}
		return l, nil, err
	}
	l, derr := debugLayout(r, runtime, major, minor)
	if errors.Is(derr, ErrFreeThreaded) {
		return nil, nil, derr
	}
	if derr == nil {
		var warn []string
		if newer {
			warn = append(warn, fmt.Sprintf("Python %d.%d is newer than pyglass was tested on (up to 3.%d): reading it with the structure offsets it publishes", major, minor, MaxMinor3))
		}
		return l, warn, nil
	}
	table, err := For(major, minor)
	if err != nil {
		if newer {
			return nil, nil, fmt.Errorf("Python %d.%d is newer than pyglass knows (up to 3.%d) and its _Py_DebugOffsets cannot be used: %v: %w", major, minor, MaxMinor3, derr, ErrUnsupported)
		}
		return nil, nil, fmt.Errorf("%w; and: %w", derr, err)
	}
	return table, []string{fmt.Sprintf("Python %d.%d: the target's _Py_DebugOffsets are unusable (%s): reading it with pyglass's own table for %d.%d", major, minor, oneLine(derr), major, minor)}, nil
}

// debugLayout reads the target's debug offsets and returns the layout
// they describe, if it passes every check and agrees with the version's
// generated table (a build variant's when one agrees).
func debugLayout(r memory.Reader, runtime uint64, major, minor int) (*Layout, error) {
	d, err := readDebugOffsets(r, runtime)
	if err != nil {
		return nil, err
	}
	if d.FreeThreaded {
		return nil, fmt.Errorf("Python %d.%d: %w", major, minor, ErrFreeThreaded)
	}
	if d.Major() != major || d.Minor() != minor {
		return nil, fmt.Errorf("they describe version %#x, the image is %d.%d: %w", d.Version, major, minor, ErrBadDebugOffsets)
	}
	l, err := d.Layout()
	if err != nil {
		return nil, err
	}
	if t, err := d.matchingTable(); err == nil {
		if diff := d.Disagree(t); len(diff) > 0 {
			return nil, fmt.Errorf("%d fields disagree with the table (%s): %w", len(diff), diff[0], ErrBadDebugOffsets)
		}
	}
	return l, nil
}

// maxWarning bounds the detail a warning quotes from an error.
const maxWarning = 160

// oneLine returns err's text on one line, cut to maxWarning bytes.
func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > maxWarning {
		s = s[:maxWarning] + "..."
	}
	return s
}
