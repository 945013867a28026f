package layout

import "fmt"

// handGroup is a set of 3.14 offsets that _Py_DebugOffsets does not
// carry, copied by hand from the headers cited. A group is used only
// when the target's debug offsets agree with every anchor: if CPython
// moved a neighbouring member, the group is left unknown (-1) rather
// than guessed.
type handGroup struct {
	header  string
	anchors map[string]uint64 // debug offset member → expected value
	fields  map[string]int    // Layout field → value
}

// hand314 holds, for CPython 3.14 (x86-64/arm64, default GIL build), the
// offsets pyglass needs that are not in _Py_DebugOffsets. When the 3.14
// headers are present the generator writes a "3.14" table, which then
// takes precedence over this one.
var hand314 = []handGroup{
	{
		header:  "Include/cpython/code.h: co_consts, co_names, co_exceptiontable, co_flags, co_argcount, ... co_nfreevars, co_version, co_localsplusnames",
		anchors: map[string]uint64{"code_object.argcount": 52, "code_object.firstlineno": 68, "code_object.localsplusnames": 96},
		fields: map[string]int{
			"CodeCoConsts": 24, "CodeCoNames": 32, "CodeCoFlags": 48, "CodeCoPosonlyargcount": 56,
			"CodeCoKwonlyargcount": 60, "CodeCoStacksize": 64, "CodeCoNlocalsplus": 72,
			"CodeCoNlocals": 80, "CodeCoNcellvars": 84, "CodeCoNfreevars": 88,
		},
	},
	{
		header:  "Include/internal/pycore_frame.h: _PyInterpreterFrame {f_executable, previous, f_funcobj, f_globals, f_builtins, f_locals, frame_obj, instr_ptr, stackpointer, ...}",
		anchors: map[string]uint64{"interpreter_frame.executable": 0, "interpreter_frame.previous": 8, "interpreter_frame.instr_ptr": 56},
		fields:  map[string]int{"InterpFrameFFunc": 16, "InterpFrameFLocals": 40},
	},
	{
		header: "Include/internal/pycore_frame.h: struct _frame {PyObject_HEAD, f_back, f_frame, f_trace, f_lineno, ...}",
		fields: map[string]int{"FrameFBack": 16, "FrameFFrame": 24, "FrameFLineno": 40},
	},
	{
		header:  "Include/object.h, Include/cpython/object.h: PyObject, PyVarObject, PyTypeObject (unchanged since 3.8 up to tp_mro)",
		anchors: map[string]uint64{"type_object.tp_name": 24, "type_object.tp_flags": 168, "pyobject.ob_type": 8},
		fields: map[string]int{
			"ObjectObRefcnt": 0, "TypeTpBasicsize": 32, "TypeTpItemsize": 40,
			"TypeTpDictoffset": 288, "TypeTpMro": 344,
		},
	},
	{
		header:  "Include/cpython/object.h: PyHeapTypeObject {ht_type, as_async, as_number, as_mapping, as_sequence, as_buffer, ht_name, ht_slots, ht_qualname, ht_cached_keys}",
		anchors: map[string]uint64{"type_object.size": 416},
		fields:  map[string]int{"HeapTypeHtCachedKeys": 880},
	},
	{
		header:  "Include/internal/pycore_dict.h: PyDictKeysObject {dk_refcnt, dk_log2_size, dk_log2_index_bytes, dk_kind, dk_version, dk_usable, dk_nentries, dk_indices}, PyDictValues {capacity, size, embedded, valid, values}",
		anchors: map[string]uint64{"dict_object.ma_keys": 32, "dict_object.ma_values": 40},
		fields: map[string]int{
			"DictMaUsed": 16, "DictKeysDkLog2Size": 8, "DictKeysDkLog2IndexBytes": 9, "DictKeysDkKind": 10,
			"DictKeysDkNentries": 24, "DictKeysDkIndices": 32, "SizeofPyDictKeyEntry": 24,
			"SizeofPyDictUnicodeEntry": 16, "DictValuesValues": 8,
		},
	},
	{
		header:  "Include/cpython/unicodeobject.h: PyASCIIObject {ob_base, length, hash, state}, PyCompactUnicodeObject {_base, utf8_length, utf8}",
		anchors: map[string]uint64{"unicode_object.asciiobject_size": 40, "unicode_object.length": 16},
		fields:  map[string]int{"ASCIIObjectHash": 24, "SizeofPyCompactUnicodeObject": 56},
	},
	{
		header: "Include/cpython/longintrepr.h (digit is uint32_t, PYLONG_BITS_IN_DIGIT 30), Include/internal/pycore_moduleobject.h (md_dict follows PyObject_HEAD)",
		fields: map[string]int{"SizeofDigit": 4, "ModuleMdDict": 16},
	},
}

// handLayout returns the hand-checked part of a layout that has no
// generated table, for the version of d.
func handLayout(d *DebugOffsets) (*Layout, error) {
	if d.Major() != 3 || d.Minor() != 14 {
		return nil, fmt.Errorf("%d.%d: %w", d.Major(), d.Minor(), ErrNoTable)
	}
	return d.handGroups()
}

// handGroups returns a layout holding the hand-checked groups whose
// anchors agree with d (and nothing else).
func (d *DebugOffsets) handGroups() (*Layout, error) {
	l := New()
	m := map[string]int{}
	for _, g := range hand314 {
		ok := true
		for a, want := range g.anchors {
			if got, present := d.Values[a]; !present || got != want {
				ok = false
			}
		}
		if !ok {
			continue
		}
		for f, v := range g.fields {
			m[f] = v
		}
	}
	// Include/internal/pycore_runtime.h: struct pyinterpreters {mutex, head, main, next_id}.
	if h, ok := d.Values["runtime_state.interpreters_head"]; ok {
		m["RuntimeInterpretersMain"] = int(h) + 8
	}
	if err := l.set(m); err != nil {
		return nil, err
	}
	return l, nil
}
