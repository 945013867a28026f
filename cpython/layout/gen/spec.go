package main

// field says how to compute one Layout field for the versions from..to
// (inclusive, "" for open). A field may have several entries for
// different version ranges; versions outside all ranges get -1.
type field struct {
	name     string // Layout field
	expr     string // C expression evaluated with the version's headers
	from, to string // "3.7", "" for no bound
}

// prelude is C text added to the generated program for a version range,
// to declare structures CPython keeps private (not in installed headers).
type prelude struct {
	from, to string
	text     string
}

// includes are the headers the generated program includes, per version.
var includes = []prelude{
	{"", "", "#include <Python.h>\n#include <frameobject.h>\n#include <structmember.h>\n"},
	{"", "3.10", "#include <code.h>\n#include <longintrepr.h>\n"},
	{"3.7", "3.7", "#include \"internal/pystate.h\"\n"},
	{"3.8", "3.8", "#include \"internal/pycore_pystate.h\"\n"},
	{"3.9", "", "#include \"internal/pycore_pystate.h\"\n#include \"internal/pycore_interp.h\"\n#include \"internal/pycore_runtime.h\"\n"},
	{"3.10", "", "#include \"internal/pycore_moduleobject.h\"\n"},
	{"3.11", "", "#include \"internal/pycore_frame.h\"\n#include \"internal/pycore_dict.h\"\n#include \"internal/pycore_code.h\"\n"},
	{"3.12", "", "#include \"internal/pycore_long.h\"\n"},
}

// preludes declare structures that are private to a .c file in some
// versions. Each copies only the leading fields, from the file cited.
var preludes = []prelude{
	// Objects/moduleobject.c (2.7–3.9): md_dict follows PyObject_HEAD.
	{"", "3.9", "typedef struct { PyObject_HEAD PyObject *md_dict; } pyglass_module;\n"},
	{"3.10", "", "typedef PyModuleObject pyglass_module;\n"},
	// Objects/dict-common.h (3.6–3.10).
	{"3.6", "3.10", `typedef struct { Py_hash_t me_hash; PyObject *me_key; PyObject *me_value; } pyglass_dictentry;
typedef struct { Py_ssize_t dk_refcnt; Py_ssize_t dk_size; void *dk_lookup; Py_ssize_t dk_usable; Py_ssize_t dk_nentries; char dk_indices[8]; } pyglass_dictkeys;
`},
	{"3.11", "", "typedef PyDictKeysObject pyglass_dictkeys;\ntypedef PyDictKeyEntry pyglass_dictentry;\n"},
}

// fields is the spec: every Layout field and how each version spells it.
// To add a field: add it to layout.Layout, add its entries here, run
// `go run ./cpython/layout/gen`.
var fields = []field{
	{"RuntimeInterpretersHead", "offsetof(_PyRuntimeState, interpreters.head)", "3.7", ""},
	{"RuntimeInterpretersMain", "offsetof(_PyRuntimeState, interpreters.main)", "3.7", ""},
	{"RuntimeMainThread", "offsetof(_PyRuntimeState, main_thread)", "3.8", ""},
	{"RuntimeGilstateTstateCurrent", "offsetof(_PyRuntimeState, gilstate.tstate_current)", "3.7", "3.11"},
	{"RuntimeCevalGilLocked", "offsetof(_PyRuntimeState, ceval.gil.locked)", "3.7", "3.11"},
	{"RuntimeCevalGilLastHolder", "offsetof(_PyRuntimeState, ceval.gil.last_holder)", "3.7", "3.11"},

	{"InterpNext", "offsetof(PyInterpreterState, next)", "", ""},
	{"InterpTstateHead", "offsetof(PyInterpreterState, tstate_head)", "", "3.10"},
	{"InterpTstateHead", "offsetof(PyInterpreterState, threads.head)", "3.11", ""},
	{"InterpThreadsMain", "offsetof(PyInterpreterState, threads.main)", "3.13", ""},
	{"InterpID", "offsetof(PyInterpreterState, id)", "3.7", ""},
	{"InterpModules", "offsetof(PyInterpreterState, modules)", "", "3.11"},
	{"InterpModules", "offsetof(PyInterpreterState, imports.modules)", "3.12", ""},
	{"InterpSysdict", "offsetof(PyInterpreterState, sysdict)", "", ""},
	{"InterpBuiltins", "offsetof(PyInterpreterState, builtins)", "", ""},
	{"InterpCevalGil", "offsetof(PyInterpreterState, ceval.gil)", "3.12", ""},

	{"GilLocked", "offsetof(struct _gil_runtime_state, locked)", "3.7", ""},
	{"GilLastHolder", "offsetof(struct _gil_runtime_state, last_holder)", "3.7", ""},

	{"TstatePrev", "offsetof(PyThreadState, prev)", "3.0", ""},
	{"TstateNext", "offsetof(PyThreadState, next)", "", ""},
	{"TstateInterp", "offsetof(PyThreadState, interp)", "", ""},
	{"TstateFrame", "offsetof(PyThreadState, frame)", "", "3.10"},
	{"TstateCframe", "offsetof(PyThreadState, cframe)", "3.10", "3.12"},
	{"TstateRootCframe", "offsetof(PyThreadState, root_cframe)", "3.11", "3.12"},
	{"TstateCurrentFrame", "offsetof(PyThreadState, current_frame)", "3.13", ""},
	{"TstateThreadID", "offsetof(PyThreadState, thread_id)", "", ""},
	{"TstateNativeThreadID", "offsetof(PyThreadState, native_thread_id)", "3.11", ""},
	{"CFrameCurrentFrame", "offsetof(_PyCFrame, current_frame)", "3.11", "3.12"},

	{"FrameFBack", "offsetof(PyFrameObject, f_back)", "", ""},
	{"FrameFCode", "offsetof(PyFrameObject, f_code)", "", "3.10"},
	{"FrameFLasti", "offsetof(PyFrameObject, f_lasti)", "", "3.10"},
	{"FrameFLineno", "offsetof(PyFrameObject, f_lineno)", "", ""},
	{"FrameFLocalsplus", "offsetof(PyFrameObject, f_localsplus)", "", "3.10"},
	{"FrameFFrame", "offsetof(PyFrameObject, f_frame)", "3.11", ""},

	{"InterpFramePrevious", "offsetof(_PyInterpreterFrame, previous)", "3.11", ""},
	{"InterpFrameFCode", "offsetof(_PyInterpreterFrame, f_code)", "3.11", "3.12"},
	{"InterpFrameFExecutable", "offsetof(_PyInterpreterFrame, f_executable)", "3.13", ""},
	{"InterpFramePrevInstr", "offsetof(_PyInterpreterFrame, prev_instr)", "3.11", "3.12"},
	{"InterpFrameInstrPtr", "offsetof(_PyInterpreterFrame, instr_ptr)", "3.13", ""},
	{"InterpFrameLocalsplus", "offsetof(_PyInterpreterFrame, localsplus)", "3.11", ""},
	{"InterpFrameOwner", "offsetof(_PyInterpreterFrame, owner)", "3.11", ""},
	{"InterpFrameStacktop", "offsetof(_PyInterpreterFrame, stacktop)", "3.11", "3.13"},
	{"InterpFrameStackpointer", "offsetof(_PyInterpreterFrame, stackpointer)", "3.14", ""},
	{"InterpFrameFFunc", "offsetof(_PyInterpreterFrame, f_func)", "3.11", "3.11"},
	{"InterpFrameFFunc", "offsetof(_PyInterpreterFrame, f_funcobj)", "3.12", ""},
	{"InterpFrameFLocals", "offsetof(_PyInterpreterFrame, f_locals)", "3.11", ""},

	{"CodeCoArgcount", "offsetof(PyCodeObject, co_argcount)", "", ""},
	{"CodeCoPosonlyargcount", "offsetof(PyCodeObject, co_posonlyargcount)", "3.8", ""},
	{"CodeCoKwonlyargcount", "offsetof(PyCodeObject, co_kwonlyargcount)", "3.0", ""},
	{"CodeCoNlocals", "offsetof(PyCodeObject, co_nlocals)", "", ""},
	{"CodeCoNlocalsplus", "offsetof(PyCodeObject, co_nlocalsplus)", "3.11", ""},
	{"CodeCoNcellvars", "offsetof(PyCodeObject, co_ncellvars)", "3.11", ""},
	{"CodeCoNfreevars", "offsetof(PyCodeObject, co_nfreevars)", "3.11", ""},
	{"CodeCoStacksize", "offsetof(PyCodeObject, co_stacksize)", "", ""},
	{"CodeCoFlags", "offsetof(PyCodeObject, co_flags)", "", ""},
	{"CodeCoFirstlineno", "offsetof(PyCodeObject, co_firstlineno)", "", ""},
	{"CodeCoCode", "offsetof(PyCodeObject, co_code)", "", "3.10"},
	{"CodeCoCodeAdaptive", "offsetof(PyCodeObject, co_code_adaptive)", "3.11", ""},
	{"CodeCoConsts", "offsetof(PyCodeObject, co_consts)", "", ""},
	{"CodeCoNames", "offsetof(PyCodeObject, co_names)", "", ""},
	{"CodeCoVarnames", "offsetof(PyCodeObject, co_varnames)", "", "3.10"},
	{"CodeCoCellvars", "offsetof(PyCodeObject, co_cellvars)", "", "3.10"},
	{"CodeCoFreevars", "offsetof(PyCodeObject, co_freevars)", "", "3.10"},
	{"CodeCoLocalsplusnames", "offsetof(PyCodeObject, co_localsplusnames)", "3.11", ""},
	{"CodeCoLocalspluskinds", "offsetof(PyCodeObject, co_localspluskinds)", "3.11", ""},
	{"CodeCoFilename", "offsetof(PyCodeObject, co_filename)", "", ""},
	{"CodeCoName", "offsetof(PyCodeObject, co_name)", "", ""},
	{"CodeCoQualname", "offsetof(PyCodeObject, co_qualname)", "3.11", ""},
	{"CodeCoLnotab", "offsetof(PyCodeObject, co_lnotab)", "", "3.9"},
	{"CodeCoLinetable", "offsetof(PyCodeObject, co_linetable)", "3.10", ""},
	{"SizeofPyCodeObject", "sizeof(PyCodeObject)", "", ""},

	{"ObjectObRefcnt", "offsetof(PyObject, ob_refcnt)", "", ""},
	{"ObjectObType", "offsetof(PyObject, ob_type)", "", ""},
	{"VarObjectObSize", "offsetof(PyVarObject, ob_size)", "", ""},
	{"SizeofPyObject", "sizeof(PyObject)", "", ""},
	{"TypeTpName", "offsetof(PyTypeObject, tp_name)", "", ""},
	{"TypeTpBasicsize", "offsetof(PyTypeObject, tp_basicsize)", "", ""},
	{"TypeTpItemsize", "offsetof(PyTypeObject, tp_itemsize)", "", ""},
	{"TypeTpFlags", "offsetof(PyTypeObject, tp_flags)", "", ""},
	{"TypeTpDictoffset", "offsetof(PyTypeObject, tp_dictoffset)", "", ""},
	{"TypeTpMro", "offsetof(PyTypeObject, tp_mro)", "", ""},
	{"HeapTypeHtCachedKeys", "offsetof(PyHeapTypeObject, ht_cached_keys)", "3.0", ""},

	{"StringObShash", "offsetof(PyStringObject, ob_shash)", "", "2.7"},
	{"StringObSval", "offsetof(PyStringObject, ob_sval)", "", "2.7"},
	{"UnicodeStr", "offsetof(PyUnicodeObject, str)", "", "2.7"},
	{"UnicodeLength", "offsetof(PyUnicodeObject, length)", "", "2.7"},
	{"SizeofPyUNICODE", "sizeof(Py_UNICODE)", "", "2.7"},
	{"ASCIIObjectLength", "offsetof(PyASCIIObject, length)", "3.0", ""},
	{"ASCIIObjectHash", "offsetof(PyASCIIObject, hash)", "3.0", ""},
	{"ASCIIObjectState", "offsetof(PyASCIIObject, state)", "3.0", ""},
	{"SizeofPyASCIIObject", "sizeof(PyASCIIObject)", "3.0", ""},
	{"SizeofPyCompactUnicodeObject", "sizeof(PyCompactUnicodeObject)", "3.0", ""},
	{"BytesObSval", "offsetof(PyBytesObject, ob_sval)", "3.0", ""},

	{"TupleObItem", "offsetof(PyTupleObject, ob_item)", "", ""},
	{"ListObItem", "offsetof(PyListObject, ob_item)", "", ""},
	{"IntObIval", "offsetof(PyIntObject, ob_ival)", "", "2.7"},
	{"LongObDigit", "offsetof(PyLongObject, ob_digit)", "", "3.11"},
	{"LongObDigit", "offsetof(PyLongObject, long_value.ob_digit)", "3.12", ""},
	{"LongLvTag", "offsetof(PyLongObject, long_value.lv_tag)", "3.12", ""},
	{"SizeofDigit", "sizeof(digit)", "", ""},
	{"FloatObFval", "offsetof(PyFloatObject, ob_fval)", "", ""},
	{"ModuleMdDict", "offsetof(pyglass_module, md_dict)", "", ""},

	{"DictMaUsed", "offsetof(PyDictObject, ma_used)", "", ""},
	{"DictMaFill", "offsetof(PyDictObject, ma_fill)", "", "2.7"},
	{"DictMaMask", "offsetof(PyDictObject, ma_mask)", "", "2.7"},
	{"DictMaTable", "offsetof(PyDictObject, ma_table)", "", "2.7"},
	{"SizeofPyDictEntry", "sizeof(PyDictEntry)", "", "2.7"},
	{"DictMaKeys", "offsetof(PyDictObject, ma_keys)", "3.0", ""},
	{"DictMaValues", "offsetof(PyDictObject, ma_values)", "3.0", ""},
	{"DictKeysDkSize", "offsetof(pyglass_dictkeys, dk_size)", "3.6", "3.10"},
	{"DictKeysDkLog2Size", "offsetof(pyglass_dictkeys, dk_log2_size)", "3.11", ""},
	{"DictKeysDkLog2IndexBytes", "offsetof(pyglass_dictkeys, dk_log2_index_bytes)", "3.11", ""},
	{"DictKeysDkKind", "offsetof(pyglass_dictkeys, dk_kind)", "3.11", ""},
	{"DictKeysDkNentries", "offsetof(pyglass_dictkeys, dk_nentries)", "3.6", ""},
	{"DictKeysDkIndices", "offsetof(pyglass_dictkeys, dk_indices)", "3.6", ""},
	{"SizeofPyDictKeyEntry", "sizeof(pyglass_dictentry)", "3.6", ""},
	{"SizeofPyDictUnicodeEntry", "sizeof(PyDictUnicodeEntry)", "3.11", ""},
	{"DictValuesValues", "offsetof(PyDictValues, values)", "3.11", ""},
}
