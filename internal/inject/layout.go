package inject

// The scratch mapping pyglass creates in the target (mapped by the cave
// bootstrap, or through a syscall gadget when there is no cave):
//
//	base            code page (RX after setup): chain, wait loop,
//	                untraced restore path, thread stub, pending-call stub
//	base+page       data page(s) (RW): the slots below, then the source
//
// Offsets of the data slots, relative to the data page. The machine code
// of both architectures addresses them from a register holding the data
// page address, so they are shared.
const (
	dStart       = 0   // PyThread_start_new_thread
	dEnsure      = 8   // PyGILState_Ensure
	dRelease     = 16  // PyGILState_Release
	dRun         = 24  // PyRun_SimpleString
	dThreadsInit = 32  // PyEval_ThreadsInitialized (legacy mode only, else 0)
	dInitThreads = 40  // PyEval_InitThreads
	dRestore     = 48  // PyEval_RestoreThread
	dSave        = 56  // PyEval_SaveThread
	dInterpHead  = 64  // PyInterpreterState_Head
	dThreadHead  = 72  // PyInterpreterState_ThreadHead
	dAddPending  = 80  // Py_AddPendingCall
	dCurrentAddr = 88  // &_PyThreadState_Current
	dMunmap      = 96  // libc munmap, 0 = leave the mapping
	dBase        = 112 // mapping start
	dLen         = 120 // mapping length
	dStub        = 128 // address of the thread stub
	dPending     = 136 // address of the pending-call stub
	dSrc         = 144 // address of the NUL-terminated source
	dIsMain      = 152 // 1 when the borrowed thread is the main thread
	dResult      = 160 // int64 result of the last start/pending call
	dPath        = 168 // which branch the chain took (path* below)
	dDone        = 176 // u32: 1 = tracer restored the thread, 2 = it restored itself
	dGilState    = 184 // u32 PyGILState_STATE
	dRunResult   = 192 // u32 PyRun_SimpleString result (-1 = exception)
	dReady       = 196 // u32: 1 once the chain is done and waits for the tracer
	dTimespec    = 200 // struct timespec {0, 1ms} for the stub's wait
	dTv          = 216 // struct timeval/timespec for the chain's wait (rewritten each time)
	dGo          = 232 // u32 read by the cave bootstrap: 1 = code and data written, jump to the chain; 2 = abort
	dErrnoVal    = 236 // u32: the borrowed thread's errno, saved by the chain
	dErrnoLoc    = 240 // __errno_location, 0 = errno not saved
	dErrnoPtr    = 248 // address of the borrowed thread's errno (set by the chain)
	dSaved       = 256 // registers for the untraced restore path (arch layout)
	dSavedSP     = 640 // original stack pointer
	dSavedPC     = 648 // original program counter
	dFPState     = 656 // address of the thread's saved FP/vector state (fpImage), 0 = none
	// The new thread is started with the C library's pthread_create when
	// these four are set (else with PyThread_start_new_thread): on a
	// thread stopped inside the interpreter's allocator hooks (tracemalloc
	// holds its table lock there), PyThread_start_new_thread's
	// PyMem_RawMalloc would take that lock again on the same thread.
	dPthreadCreate = 664 // pthread_create
	dPthreadDetach = 672 // pthread_detach
	dAttrInit      = 680 // pthread_attr_init
	dAttrSetStack  = 688 // pthread_attr_setstacksize
	dStackSize     = 696 // the new thread's stack size
	dViaPthread    = 704 // 1 once the chain called pthread_create (dResult is its return value)
	dTid           = 712 // pthread_t of the new thread
	dAttr          = 768 // pthread_attr_t (56 or 64 bytes; 128 reserved)
	dSrcText       = 1024
)

// Values of the dPath slot.
const (
	pathNone      = 0 // the chain did not reach a decision
	pathStarted   = 1 // PyThread_start_new_thread called
	pathInitStart = 2 // threads initialised on the main thread, then started
	pathPending   = 3 // Py_AddPendingCall(pending stub) on the busy main thread
	pathNoThreads = 4 // threads never initialised and not on the main thread
	pathNoTstate  = 5 // threads never initialised and no thread state found
)

var pathNames = map[uint64]string{
	pathNone:      "none",
	pathStarted:   "new-thread",
	pathInitStart: "init-threads+new-thread",
	pathPending:   "pending-call",
	pathNoThreads: "threads-uninitialised-not-main",
	pathNoTstate:  "no-thread-state",
}

// codeAddrs are the entry points of the generated machine code.
type codeAddrs struct {
	chain   uint64 // where the borrowed thread is sent
	code    uint64 // [code, codeEnd): the thread is in our hands while its PC is there
	codeEnd uint64
	stub    uint64 // new thread entry: stub(data)
	pending uint64 // pending call: pending(data) int
}

// bootCode is the bootstrap written to a code cave (see cave.go): it maps
// the scratch memory (RW), makes its first page RX, waits for the dGo word
// of the data page and jumps to the chain; on any failure, or when dGo
// stays 0 for about 200 ms (the tracer vanished), it unmaps the scratch
// memory and restores the thread from the register block stored in the
// cave itself.
type bootCode struct {
	code       []byte // ends with the saved registers and caveMagic
	entry      uint64 // where the borrowed thread is sent
	mmapPC     uint64 // PC reported at the stops of the mmap syscall
	mprotectPC uint64 // PC reported at the stops of the mprotect syscall
}
