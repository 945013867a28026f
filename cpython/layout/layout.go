// Package layout holds, per CPython minor version, the offsets and sizes
// of the interpreter structures pyglass reads from outside a process.
//
// The numbers are data, not code: tables.json (compiled in as tables_gen.go)
// is written by the generator
// in ./gen, which compiles offsetof/sizeof of every field against the
// headers of each interpreter installed on the build machine. For 3.13+
// the target itself publishes most offsets in _Py_DebugOffsets (see
// FromDebugOffsets). A field is -1 when the version lacks it.
//
// All offsets are for 64-bit Linux targets (amd64, arm64).
package layout

// Layout is the set of offsets (bytes from the start of the structure)
// and sizes pyglass needs for one CPython version. Every field is -1
// when the version has no such field. Field names follow the CPython
// struct and field names.
type Layout struct {
	// Major and Minor are the CPython version the table describes.
	Major, Minor int `json:"-"`

	// --- _PyRuntimeState (Include/internal/pycore_runtime.h; 3.7: internal/pystate.h)

	// RuntimeInterpretersHead is offsetof(_PyRuntimeState, interpreters.head), 3.7+.
	RuntimeInterpretersHead int
	// RuntimeInterpretersMain is offsetof(_PyRuntimeState, interpreters.main), 3.7+.
	RuntimeInterpretersMain int
	// RuntimeMainThread is offsetof(_PyRuntimeState, main_thread) (a pthread_t), 3.7+.
	RuntimeMainThread int
	// RuntimeGilstateTstateCurrent is offsetof(_PyRuntimeState, gilstate.tstate_current), 3.7–3.11.
	RuntimeGilstateTstateCurrent int
	// RuntimeCevalGilLocked is offsetof(_PyRuntimeState, ceval.gil.locked), 3.7–3.11.
	RuntimeCevalGilLocked int
	// RuntimeCevalGilLastHolder is offsetof(_PyRuntimeState, ceval.gil.last_holder), 3.7–3.11.
	RuntimeCevalGilLastHolder int

	// --- PyInterpreterState (Include/internal/pycore_interp.h; ≤3.8 Include/pystate.h)

	// InterpNext is offsetof(PyInterpreterState, next).
	InterpNext int
	// InterpTstateHead is offsetof(PyInterpreterState, tstate_head) (≤3.10)
	// or offsetof(PyInterpreterState, threads.head) (3.11+).
	InterpTstateHead int
	// InterpThreadsMain is offsetof(PyInterpreterState, threads.main), 3.13+.
	InterpThreadsMain int
	// InterpID is offsetof(PyInterpreterState, id) (int64), 3.7+.
	InterpID int
	// InterpModules is offsetof(PyInterpreterState, modules) (≤3.11)
	// or offsetof(PyInterpreterState, imports.modules) (3.12+).
	InterpModules int
	// InterpSysdict is offsetof(PyInterpreterState, sysdict).
	InterpSysdict int
	// InterpBuiltins is offsetof(PyInterpreterState, builtins).
	InterpBuiltins int
	// InterpCevalGil is offsetof(PyInterpreterState, ceval.gil), a pointer
	// to struct _gil_runtime_state, 3.12+.
	InterpCevalGil int

	// --- struct _gil_runtime_state (Include/internal/pycore_gil.h), 3.7+

	// GilLocked is offsetof(struct _gil_runtime_state, locked) (an int).
	GilLocked int
	// GilLastHolder is offsetof(struct _gil_runtime_state, last_holder) (a PyThreadState*).
	GilLastHolder int

	// --- PyThreadState (Include/cpython/pystate.h; ≤3.7 Include/pystate.h)

	// TstatePrev is offsetof(PyThreadState, prev), 3.x.
	TstatePrev int
	// TstateNext is offsetof(PyThreadState, next).
	TstateNext int
	// TstateInterp is offsetof(PyThreadState, interp).
	TstateInterp int
	// TstateFrame is offsetof(PyThreadState, frame) (a PyFrameObject*), ≤3.10.
	TstateFrame int
	// TstateCframe is offsetof(PyThreadState, cframe) (a _PyCFrame*), 3.10–3.12.
	TstateCframe int
	// TstateCurrentFrame is offsetof(PyThreadState, current_frame)
	// (a _PyInterpreterFrame*), 3.13+.
	TstateCurrentFrame int
	// TstateThreadID is offsetof(PyThreadState, thread_id) (a pthread_t).
	TstateThreadID int
	// TstateNativeThreadID is offsetof(PyThreadState, native_thread_id), 3.11+.
	TstateNativeThreadID int
	// TstateRootCframe is offsetof(PyThreadState, root_cframe), 3.11–3.12:
	// the _PyCFrame tstate->cframe points at while the thread is outside
	// the evaluation loop.
	TstateRootCframe int
	// CFrameCurrentFrame is offsetof(_PyCFrame, current_frame), 3.11–3.12.
	CFrameCurrentFrame int

	// --- PyFrameObject (Include/frameobject.h, Include/cpython/frameobject.h;
	// 3.11+ Include/internal/pycore_frame.h)

	// FrameFBack is offsetof(PyFrameObject, f_back).
	FrameFBack int
	// FrameFCode is offsetof(PyFrameObject, f_code), ≤3.10.
	FrameFCode int
	// FrameFLasti is offsetof(PyFrameObject, f_lasti) (int), ≤3.10.
	FrameFLasti int
	// FrameFLineno is offsetof(PyFrameObject, f_lineno) (int).
	FrameFLineno int
	// FrameFLocalsplus is offsetof(PyFrameObject, f_localsplus), ≤3.10.
	FrameFLocalsplus int
	// FrameFFrame is offsetof(PyFrameObject, f_frame) (a _PyInterpreterFrame*), 3.11+.
	FrameFFrame int

	// --- _PyInterpreterFrame (Include/internal/pycore_frame.h), 3.11+

	// InterpFramePrevious is offsetof(_PyInterpreterFrame, previous).
	InterpFramePrevious int
	// InterpFrameFCode is offsetof(_PyInterpreterFrame, f_code), 3.11–3.12.
	InterpFrameFCode int
	// InterpFrameFExecutable is offsetof(_PyInterpreterFrame, f_executable), 3.13+
	// (a _PyStackRef with tag bits on 3.14).
	InterpFrameFExecutable int
	// InterpFramePrevInstr is offsetof(_PyInterpreterFrame, prev_instr), 3.11–3.12.
	InterpFramePrevInstr int
	// InterpFrameInstrPtr is offsetof(_PyInterpreterFrame, instr_ptr), 3.13+.
	InterpFrameInstrPtr int
	// InterpFrameLocalsplus is offsetof(_PyInterpreterFrame, localsplus).
	InterpFrameLocalsplus int
	// InterpFrameOwner is offsetof(_PyInterpreterFrame, owner) (a char).
	InterpFrameOwner int
	// InterpFrameStacktop is offsetof(_PyInterpreterFrame, stacktop) (int), 3.11–3.13.
	InterpFrameStacktop int
	// InterpFrameStackpointer is offsetof(_PyInterpreterFrame, stackpointer), 3.14+.
	InterpFrameStackpointer int
	// InterpFrameFFunc is offsetof(_PyInterpreterFrame, f_func) (3.11)
	// or offsetof(_PyInterpreterFrame, f_funcobj) (3.12+).
	InterpFrameFFunc int
	// InterpFrameFLocals is offsetof(_PyInterpreterFrame, f_locals).
	InterpFrameFLocals int

	// --- PyCodeObject (Include/code.h; 3.8+ Include/cpython/code.h)

	// CodeCoArgcount is offsetof(PyCodeObject, co_argcount) (int).
	CodeCoArgcount int
	// CodeCoPosonlyargcount is offsetof(PyCodeObject, co_posonlyargcount) (int), 3.8+.
	CodeCoPosonlyargcount int
	// CodeCoKwonlyargcount is offsetof(PyCodeObject, co_kwonlyargcount) (int), 3.x.
	CodeCoKwonlyargcount int
	// CodeCoNlocals is offsetof(PyCodeObject, co_nlocals) (int).
	CodeCoNlocals int
	// CodeCoNlocalsplus is offsetof(PyCodeObject, co_nlocalsplus) (int), 3.11+.
	CodeCoNlocalsplus int
	// CodeCoNcellvars is offsetof(PyCodeObject, co_ncellvars) (int), 3.11+.
	CodeCoNcellvars int
	// CodeCoNfreevars is offsetof(PyCodeObject, co_nfreevars) (int), 3.11+.
	CodeCoNfreevars int
	// CodeCoStacksize is offsetof(PyCodeObject, co_stacksize) (int).
	CodeCoStacksize int
	// CodeCoFlags is offsetof(PyCodeObject, co_flags) (int).
	CodeCoFlags int
	// CodeCoFirstlineno is offsetof(PyCodeObject, co_firstlineno) (int).
	CodeCoFirstlineno int
	// CodeCoCode is offsetof(PyCodeObject, co_code) (a bytes object), ≤3.10.
	CodeCoCode int
	// CodeCoCodeAdaptive is offsetof(PyCodeObject, co_code_adaptive)
	// (the bytecode, inline), 3.11+.
	CodeCoCodeAdaptive int
	// CodeCoConsts is offsetof(PyCodeObject, co_consts).
	CodeCoConsts int
	// CodeCoNames is offsetof(PyCodeObject, co_names).
	CodeCoNames int
	// CodeCoVarnames is offsetof(PyCodeObject, co_varnames), ≤3.10.
	CodeCoVarnames int
	// CodeCoCellvars is offsetof(PyCodeObject, co_cellvars), ≤3.10.
	CodeCoCellvars int
	// CodeCoFreevars is offsetof(PyCodeObject, co_freevars), ≤3.10.
	CodeCoFreevars int
	// CodeCoLocalsplusnames is offsetof(PyCodeObject, co_localsplusnames), 3.11+.
	CodeCoLocalsplusnames int
	// CodeCoLocalspluskinds is offsetof(PyCodeObject, co_localspluskinds), 3.11+.
	CodeCoLocalspluskinds int
	// CodeCoFilename is offsetof(PyCodeObject, co_filename).
	CodeCoFilename int
	// CodeCoName is offsetof(PyCodeObject, co_name).
	CodeCoName int
	// CodeCoQualname is offsetof(PyCodeObject, co_qualname), 3.11+.
	CodeCoQualname int
	// CodeCoLnotab is offsetof(PyCodeObject, co_lnotab), ≤3.9.
	CodeCoLnotab int
	// CodeCoLinetable is offsetof(PyCodeObject, co_linetable), 3.10+.
	CodeCoLinetable int
	// SizeofPyCodeObject is sizeof(PyCodeObject).
	SizeofPyCodeObject int

	// --- PyObject, PyVarObject, PyTypeObject (Include/object.h, Include/cpython/object.h)

	// ObjectObRefcnt is offsetof(PyObject, ob_refcnt).
	ObjectObRefcnt int
	// ObjectObType is offsetof(PyObject, ob_type).
	ObjectObType int
	// VarObjectObSize is offsetof(PyVarObject, ob_size).
	VarObjectObSize int
	// SizeofPyObject is sizeof(PyObject).
	SizeofPyObject int
	// TypeTpName is offsetof(PyTypeObject, tp_name) (a char*).
	TypeTpName int
	// TypeTpBasicsize is offsetof(PyTypeObject, tp_basicsize).
	TypeTpBasicsize int
	// TypeTpItemsize is offsetof(PyTypeObject, tp_itemsize).
	TypeTpItemsize int
	// TypeTpFlags is offsetof(PyTypeObject, tp_flags) (unsigned long).
	TypeTpFlags int
	// TypeTpDictoffset is offsetof(PyTypeObject, tp_dictoffset).
	TypeTpDictoffset int
	// TypeTpMro is offsetof(PyTypeObject, tp_mro).
	TypeTpMro int
	// HeapTypeHtCachedKeys is offsetof(PyHeapTypeObject, ht_cached_keys)
	// (the shared keys of instance dicts and managed values), 3.3+.
	HeapTypeHtCachedKeys int

	// --- strings: 2.7 PyStringObject/PyUnicodeObject; 3.x compact unicode
	// (Include/stringobject.h, Include/unicodeobject.h, Include/cpython/unicodeobject.h)

	// StringObShash is offsetof(PyStringObject, ob_shash), 2.7.
	StringObShash int
	// StringObSval is offsetof(PyStringObject, ob_sval), 2.7.
	StringObSval int
	// UnicodeStr is offsetof(PyUnicodeObject, str) (a Py_UNICODE*), 2.7.
	UnicodeStr int
	// UnicodeLength is offsetof(PyUnicodeObject, length), 2.7.
	UnicodeLength int
	// SizeofPyUNICODE is sizeof(Py_UNICODE), 2.7 (2 or 4 depending on the build).
	SizeofPyUNICODE int
	// ASCIIObjectLength is offsetof(PyASCIIObject, length), 3.x.
	ASCIIObjectLength int
	// ASCIIObjectHash is offsetof(PyASCIIObject, hash), 3.x.
	ASCIIObjectHash int
	// ASCIIObjectState is offsetof(PyASCIIObject, state) (a bit field word), 3.x.
	ASCIIObjectState int
	// SizeofPyASCIIObject is sizeof(PyASCIIObject): compact ASCII data follows it.
	SizeofPyASCIIObject int
	// SizeofPyCompactUnicodeObject is sizeof(PyCompactUnicodeObject):
	// compact non-ASCII data follows it.
	SizeofPyCompactUnicodeObject int
	// BytesObSval is offsetof(PyBytesObject, ob_sval), 3.x.
	BytesObSval int

	// --- containers and numbers

	// TupleObItem is offsetof(PyTupleObject, ob_item).
	TupleObItem int
	// ListObItem is offsetof(PyListObject, ob_item) (a PyObject**).
	ListObItem int
	// IntObIval is offsetof(PyIntObject, ob_ival), 2.7.
	IntObIval int
	// LongObDigit is offsetof(PyLongObject, ob_digit) (≤3.11) or
	// offsetof(PyLongObject, long_value.ob_digit) (3.12+).
	LongObDigit int
	// LongLvTag is offsetof(PyLongObject, long_value.lv_tag), 3.12+.
	LongLvTag int
	// SizeofDigit is sizeof(digit) (2 or 4; PYLONG_BITS_IN_DIGIT 15 or 30).
	SizeofDigit int
	// FloatObFval is offsetof(PyFloatObject, ob_fval).
	FloatObFval int
	// ModuleMdDict is offsetof(PyModuleObject, md_dict).
	ModuleMdDict int

	// --- dicts (Include/dictobject.h; 3.6–3.10 Objects/dict-common.h;
	// 3.11+ Include/internal/pycore_dict.h)

	// DictMaUsed is offsetof(PyDictObject, ma_used).
	DictMaUsed int
	// DictMaFill is offsetof(PyDictObject, ma_fill), 2.7.
	DictMaFill int
	// DictMaMask is offsetof(PyDictObject, ma_mask), 2.7.
	DictMaMask int
	// DictMaTable is offsetof(PyDictObject, ma_table) (a PyDictEntry*), 2.7.
	DictMaTable int
	// SizeofPyDictEntry is sizeof(PyDictEntry) {me_hash, me_key, me_value}, 2.7.
	SizeofPyDictEntry int
	// DictMaKeys is offsetof(PyDictObject, ma_keys), 3.x.
	DictMaKeys int
	// DictMaValues is offsetof(PyDictObject, ma_values), 3.x.
	DictMaValues int
	// DictKeysDkSize is offsetof(PyDictKeysObject, dk_size), ≤3.10.
	DictKeysDkSize int
	// DictKeysDkLog2Size is offsetof(PyDictKeysObject, dk_log2_size) (uint8), 3.11+.
	DictKeysDkLog2Size int
	// DictKeysDkLog2IndexBytes is offsetof(PyDictKeysObject, dk_log2_index_bytes) (uint8), 3.11+.
	DictKeysDkLog2IndexBytes int
	// DictKeysDkKind is offsetof(PyDictKeysObject, dk_kind) (uint8:
	// 0 general, 1 unicode, 2 split), 3.11+.
	DictKeysDkKind int
	// DictKeysDkNentries is offsetof(PyDictKeysObject, dk_nentries).
	DictKeysDkNentries int
	// DictKeysDkIndices is offsetof(PyDictKeysObject, dk_indices): the
	// index table, followed by the entries.
	DictKeysDkIndices int
	// SizeofPyDictKeyEntry is sizeof(PyDictKeyEntry) {me_hash, me_key, me_value}, 3.x.
	SizeofPyDictKeyEntry int
	// SizeofPyDictUnicodeEntry is sizeof(PyDictUnicodeEntry) {me_key, me_value}, 3.11+.
	SizeofPyDictUnicodeEntry int
	// DictValuesValues is offsetof(PyDictValues, values), 3.11+.
	DictValuesValues int
}
