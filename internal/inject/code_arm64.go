package inject

import (
	"encoding/binary"
	"fmt"

	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/target/live"
)

// arm64 machine code, written by hand (A64 encodings, little-endian
// words). x19 holds the data page address in the chain, the stub and the
// pending stub; x16 is the call register (BTI-compatible for br). This
// file builds and is reviewed but cannot be exercised on the amd64 CI.

type asm struct {
	w      []uint32
	base   uint64
	labels map[string]int
	fix    []fixup
}

type fixup struct {
	at    int // word index of the branch
	kind  int // fixImm19 or fixImm26
	label string
}

const (
	fixImm19 = iota // cbz/cbnz/b.cond: imm19 at bits 23:5
	fixImm26        // b: imm26 at bits 25:0
)

func newAsm(base uint64) *asm { return &asm{base: base, labels: map[string]int{}} }

func (a *asm) pc() uint64        { return a.base + 4*uint64(len(a.w)) }
func (a *asm) op(w uint32)       { a.w = append(a.w, w) }
func (a *asm) label(name string) { a.labels[name] = len(a.w) }

func (a *asm) br19(w uint32, l string) { a.fix = append(a.fix, fixup{len(a.w), fixImm19, l}); a.op(w) }
func (a *asm) br26(w uint32, l string) { a.fix = append(a.fix, fixup{len(a.w), fixImm26, l}); a.op(w) }

const (
	x0  = 0
	x1  = 1
	x2  = 2
	x3  = 3
	x4  = 4
	x5  = 5
	x8  = 8
	x16 = 16
	x17 = 17
	x19 = 19
	x20 = 20
	xzr = 31
)

func (a *asm) adr(rd uint32, target uint64) { // adr rd, target (±1 MiB)
	imm := uint32(int32(int64(target - a.pc())))
	a.op(0x10000000 | (imm&3)<<29 | (imm>>2&0x7ffff)<<5 | rd)
}
func (a *asm) ldrX(rt, rn, off uint32) { a.op(0xf9400000 | (off/8)<<10 | rn<<5 | rt) } // ldr xt,[xn,#off]
func (a *asm) strX(rt, rn, off uint32) { a.op(0xf9000000 | (off/8)<<10 | rn<<5 | rt) } // str xt,[xn,#off]
func (a *asm) ldrW(rt, rn, off uint32) { a.op(0xb9400000 | (off/4)<<10 | rn<<5 | rt) } // ldr wt,[xn,#off]
func (a *asm) strW(rt, rn, off uint32) { a.op(0xb9000000 | (off/4)<<10 | rn<<5 | rt) } // str wt,[xn,#off]
func (a *asm) movz(rd, imm uint32)     { a.op(0xd2800000 | (imm&0xffff)<<5 | rd) }     // movz xd,#imm
func (a *asm) movk16(rd, imm uint32)   { a.op(0xf2a00000 | (imm&0xffff)<<5 | rd) }     // movk xd,#imm,lsl #16
func (a *asm) mov(rd, rm uint32)       { a.op(0xaa0003e0 | rm<<16 | rd) }              // mov xd,xm (orr xd,xzr,xm)
func (a *asm) addImm(rd, rn, imm uint32) { // add xd,xn,#imm
	a.op(0x91000000 | imm<<10 | rn<<5 | rd)
}
func (a *asm) blr(rn uint32)             { a.op(0xd63f0000 | rn<<5) } // blr xn
func (a *asm) br(rn uint32)              { a.op(0xd61f0000 | rn<<5) } // br xn
func (a *asm) ret()                      { a.op(0xd65f03c0) }         // ret
func (a *asm) svc()                      { a.op(0xd4000001) }         // svc #0
func (a *asm) btiC()                     { a.op(0xd503245f) }         // bti c (a nop without BTI)
func (a *asm) cbz(rt uint32, l string)   { a.br19(0xb4000000|rt, l) } // cbz xt
func (a *asm) cbnz(rt uint32, l string)  { a.br19(0xb5000000|rt, l) } // cbnz xt
func (a *asm) cbnzW(rt uint32, l string) { a.br19(0x35000000|rt, l) } // cbnz wt
func (a *asm) bne(l string)              { a.br19(0x54000001, l) }    // b.ne
func (a *asm) b(l string)                { a.br26(0x14000000, l) }    // b
func (a *asm) call(off uint32)           { a.ldrX(x16, x19, off); a.blr(x16) }
func (a *asm) setPath(v uint32)          { a.movz(x16, v); a.strX(x16, x19, dPath) }
func (a *asm) prologue() {
	a.op(0xa9be7bfd) // stp x29,x30,[sp,#-32]!
	a.op(0x910003fd) // mov x29,sp
	a.op(0xa90153f3) // stp x19,x20,[sp,#16]
}
func (a *asm) epilogue() {
	a.op(0xa94153f3) // ldp x19,x20,[sp,#16]
	a.op(0xa8c27bfd) // ldp x29,x30,[sp],#32
}

func (a *asm) finish() ([]byte, error) {
	for _, f := range a.fix {
		t, ok := a.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("assembling: undefined label %q", f.label)
		}
		d := uint32(int32(t - f.at))
		if f.kind == fixImm19 {
			a.w[f.at] |= (d & 0x7ffff) << 5
		} else {
			a.w[f.at] |= d & 0x3ffffff
		}
	}
	b := make([]byte, 0, 4*len(a.w))
	for _, w := range a.w {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b, nil
}

const (
	sysPselect6  = 72
	sysNanosleep = 101
	sysMmap      = 222
	sysMprotect  = 226
	sysMunmap    = 215
)

// genCode assembles the code page for a mapping at base whose data page
// is at data. Same structure as the amd64 version.
func genCode(base, data uint64) ([]byte, codeAddrs, error) {
	a := newAsm(base)
	var ca codeAddrs
	ca.code = base

	// ---- chain: sp 16-byte aligned, never returns.
	ca.chain = a.pc()
	a.adr(x19, data)
	// Save the thread's errno (the C calls below may change it).
	a.ldrX(x16, x19, dErrnoLoc)
	a.cbz(x16, "noerrno")
	a.blr(x16) // __errno_location()
	a.strX(x0, x19, dErrnoPtr)
	a.ldrW(x16, x0, 0)
	a.strW(x16, x19, dErrnoVal)
	a.label("noerrno")
	a.ldrX(x16, x19, dThreadsInit)
	a.cbz(x16, "normal")
	a.blr(x16) // PyEval_ThreadsInitialized()
	a.cbnzW(x0, "normal")
	a.ldrX(x16, x19, dIsMain)
	a.cbz(x16, "notmain")
	a.ldrX(x16, x19, dCurrentAddr)
	a.ldrX(x16, x16, 0) // _PyThreadState_Current
	a.cbnz(x16, "busy")
	a.call(dInterpHead) // PyInterpreterState_Head()
	a.cbz(x0, "nostate")
	a.call(dThreadHead) // PyInterpreterState_ThreadHead(interp)
	a.cbz(x0, "nostate")
	a.call(dRestore)     // PyEval_RestoreThread(tstate)
	a.call(dInitThreads) // PyEval_InitThreads()
	a.call(dSave)        // PyEval_SaveThread()
	a.setPath(pathInitStart)
	a.b("start")
	a.label("busy")
	a.ldrX(x0, x19, dPending)
	a.mov(x1, x19)
	a.call(dAddPending) // Py_AddPendingCall(pending, data)
	a.op(0x93407c00)    // sxtw x0,w0
	a.strX(x0, x19, dResult)
	a.setPath(pathPending)
	a.b("marker")
	a.label("notmain")
	a.setPath(pathNoThreads)
	a.b("marker")
	a.label("nostate")
	a.setPath(pathNoTstate)
	a.b("marker")
	a.label("normal")
	a.setPath(pathStarted)
	a.label("start")
	a.ldrX(x16, x19, dPthreadCreate)
	a.cbz(x16, "pystart")
	a.addImm(x0, x19, dAttr)
	a.call(dAttrInit) // pthread_attr_init(&attr)
	a.addImm(x0, x19, dAttr)
	a.ldrX(x1, x19, dStackSize)
	a.call(dAttrSetStack) // pthread_attr_setstacksize(&attr, size)
	a.addImm(x0, x19, dTid)
	a.addImm(x1, x19, dAttr)
	a.ldrX(x2, x19, dStub)
	a.mov(x3, x19)
	a.movz(x16, 1)
	a.strX(x16, x19, dViaPthread)
	a.call(dPthreadCreate) // pthread_create(&tid, &attr, stub, data)
	a.op(0x93407c00)       // sxtw x0,w0
	a.strX(x0, x19, dResult)
	a.cbnz(x0, "marker")
	a.ldrX(x0, x19, dTid)
	a.call(dPthreadDetach) // pthread_detach(tid)
	a.b("marker")
	a.label("pystart")
	a.ldrX(x0, x19, dStub)
	a.mov(x1, x19)
	a.call(dStart) // PyThread_start_new_thread(stub, data)
	a.strX(x0, x19, dResult)
	a.label("marker")
	a.ldrX(x16, x19, dErrnoPtr)
	a.cbz(x16, "errnokept")
	a.ldrW(x17, x19, dErrnoVal)
	a.strW(x17, x16, 0) // errno restored
	a.label("errnokept")
	// ready = 1, then wait for the tracer: pselect6(0,0,0,0,&1ms,0) at
	// most 200 times (ERESTARTNOHAND when interrupted; restart_block kept).
	a.movz(x16, 1)
	a.strW(x16, x19, dReady)
	a.movz(x20, 200)
	a.label("await")
	a.strX(xzr, x19, dTv) // tv_sec = 0
	a.movz(x16, 1000000&0xffff)
	a.movk16(x16, 1000000>>16)
	a.strX(x16, x19, dTv+8) // tv_nsec = 1 ms
	a.movz(x0, 0)
	a.movz(x1, 0)
	a.movz(x2, 0)
	a.movz(x3, 0)
	a.addImm(x4, x19, dTv)
	a.movz(x5, 0)
	a.movz(x8, sysPselect6)
	a.svc()
	a.op(0x71000694) // subs w20,w20,#1
	a.bne("await")
	// Untraced restore (no tracer came): v0..v31, FPSR and FPCR from the
	// FP image the tracer read, done = 2, NZCV, sp, x0..x30 from the
	// saved block, then br to the saved pc through x16 (x16 is the only
	// register not restored on this path).
	a.ldrX(x17, x19, dFPState)
	a.cbz(x17, "nofp")
	for r := uint32(0); r < 32; r += 2 {
		a.op(0xad400000 | r<<15 | (r+1)<<10 | x17<<5 | r) // ldp qr,qr+1,[x17,#16r]
	}
	a.ldrW(x16, x17, 512)
	a.op(0xd51b4420 | x16) // msr fpsr,x16
	a.ldrW(x16, x17, 516)
	a.op(0xd51b4400 | x16) // msr fpcr,x16
	a.label("nofp")
	a.adr(x16, data+dDone)
	a.movz(x17, 2)
	a.strW(x17, x16, 0)
	a.adr(x16, data+dSaved)
	a.ldrX(x17, x16, 31*8) // sp
	a.op(0x9100023f)       // mov sp,x17
	a.ldrX(x17, x16, 33*8) // pstate
	a.op(0xd51b4200 | x17) // msr nzcv,x17
	for r := uint32(0); r < 16; r += 2 {
		a.op(0xa9400000 | (r)<<15 | (r+1)<<10 | x16<<5 | r) // ldp xr,xr+1,[x16,#8r]
	}
	a.ldrX(x17, x16, 17*8)
	for r := uint32(18); r < 30; r += 2 {
		a.op(0xa9400000 | (r)<<15 | (r+1)<<10 | x16<<5 | r) // ldp xr,xr+1,[x16,#8r]
	}
	a.ldrX(30, x16, 30*8)
	a.ldrX(x16, x16, 32*8) // pc
	a.br(x16)

	// ---- stub(data): new thread entry.
	ca.stub = a.pc()
	a.btiC()
	a.prologue()
	a.mov(x19, x0)
	a.call(dEnsure) // PyGILState_Ensure()
	a.strW(x0, x19, dGilState)
	a.ldrX(x0, x19, dSrc)
	a.call(dRun) // PyRun_SimpleString(src)
	a.strW(x0, x19, dRunResult)
	a.ldrW(x0, x19, dGilState)
	a.call(dRelease)                  // PyGILState_Release(state)
	a.op(0x52800000 | 10000<<5 | x20) // movz w20,#10000: wait ~10 s at most
	a.label("wait")
	a.ldrW(x0, x19, dDone)
	a.cbnzW(x0, "ready")
	a.addImm(x0, x19, dTimespec)
	a.movz(x1, 0)
	a.movz(x8, sysNanosleep)
	a.svc()
	a.op(0x71000694) // subs w20,w20,#1
	a.bne("wait")
	a.b("leak")
	a.label("ready")
	a.op(0x7100041f) // cmp w0,#1
	a.bne("leak")
	a.ldrX(x16, x19, dMunmap)
	a.cbz(x16, "leak")
	a.ldrX(x0, x19, dBase)
	a.ldrX(x1, x19, dLen)
	a.epilogue()
	a.br(x16) // munmap(base,len) returns straight to our caller (x30)
	a.label("leak")
	a.epilogue()
	a.movz(x0, 0)
	a.ret()

	// ---- pending(data) int.
	ca.pending = a.pc()
	a.btiC()
	a.prologue()
	a.mov(x19, x0)
	a.call(dInitThreads)
	a.ldrX(x0, x19, dStub)
	a.mov(x1, x19)
	a.call(dStart)
	a.strX(x0, x19, dResult)
	a.epilogue()
	a.movz(x0, 0)
	a.ret()
	ca.codeEnd = a.pc()
	b, err := a.finish()
	return b, ca, err
}

// The FP image is the NT_PRFPREG regset (struct user_fpsimd_state):
// v0..v31, then fpsr and fpcr.
const (
	fpAlign   = 16
	fpReserve = 1 << 10
)

func fpImageUsable(fp []byte) bool { return len(fp) >= 520 && len(fp) <= fpReserve }

// savedBlock is what the untraced restore path loads at dSaved:
// x0..x30, sp, pc, pstate.
func savedBlock(r *ptrace.Regs) []byte {
	var out []byte
	for _, v := range r.Regs {
		out = binary.LittleEndian.AppendUint64(out, v)
	}
	out = binary.LittleEndian.AppendUint64(out, r.Sp)
	out = binary.LittleEndian.AppendUint64(out, r.Pc)
	out = binary.LittleEndian.AppendUint64(out, r.Pstate)
	return out
}

var forbiddenSyscalls = map[int]string{222: "mmap", 226: "mprotect", 215: "munmap", 214: "brk", 216: "mremap", 233: "madvise"}

var svcWord = binary.LittleEndian.Uint32(ptrace.SyscallInstr)

// inSyscall: on arm64 the kernel has already rewound an interrupted
// syscall to its svc (pc) before the stop; a finished one leaves pc just
// after it. x8 holds the number in both cases.
func inSyscall(r *ptrace.Regs, mem *live.Process) (int, bool) {
	var b [8]byte
	if _, err := mem.ReadAt(b[:], r.Pc-4); err != nil {
		return -1, false
	}
	if binary.LittleEndian.Uint32(b[0:]) == svcWord || binary.LittleEndian.Uint32(b[4:]) == svcWord {
		return int(r.Regs[8]), true
	}
	return -1, false
}

// syscallGadgetHere is 0 on arm64: resuming at the interrupted svc would
// let the kernel rewrite x8 (restart_syscall), so a gadget elsewhere is used.
func syscallGadgetHere(*ptrace.Regs) uint64 { return 0 }

// restoredRegs: arm64 rewinds restartable syscalls before the stop, so
// the saved registers are given back as they are. Limitation: for
// ERESTART_RESTARTBLOCK the original syscall is re-issued instead of
// restart_syscall (a relative sleep starts over). A call that fails with
// EINTR when stopped (epoll_wait...) is not run again.
func restoredRegs(saved ptrace.Regs, _ bool) ptrace.Regs { return saved }

// deliversWithSiginfo says whether release hands held signals over with
// their siginfo (deliverHeld). Not on arm64: the call the stop ended is
// already rewound there, so a handler without SA_RESTART would find it
// run again rather than failed with EINTR; the signals are sent after
// the detach, arriving during the call as before.
const deliversWithSiginfo = false

func callRegs(saved ptrace.Regs, chain uint64) ptrace.Regs {
	r := saved
	r.Sp = (saved.Sp - 128) &^ 15
	r.Pc = chain
	r.Regs[30] = 0
	return r
}

func syscallRegs(saved ptrace.Regs, gadget uint64, nr uint64, args ...uint64) ptrace.Regs {
	r := saved
	r.Pc = gadget
	r.Regs[8] = nr
	for i := 0; i < 6; i++ {
		r.Regs[i] = 0
	}
	copy(r.Regs[:6], args)
	return r
}

func syscallResult(r *ptrace.Regs) uint64 { return r.Regs[0] }

func syscallPC(gadget uint64) uint64 { return gadget + 4 }

func setSavedSPPC(r *ptrace.Regs) (sp, pc uint64) { return r.Sp, r.Pc }

func shadowStackEnabled(string) bool { return false }

const gadgetAlign = 4

const x21 = 21

// mov32 loads a 32-bit constant into xd (movz + movk).
func (a *asm) mov32(rd uint32, v uint64) {
	a.movz(rd, uint32(v&0xffff))
	a.movk16(rd, uint32(v>>16&0xffff))
}

// genBoot assembles the cave bootstrap at addr (see bootCode); same
// structure as the amd64 version. x19 holds the scratch mapping, x21 its
// data page.
func genBoot(addr, size, page uint64, final *ptrace.Regs) (bootCode, error) {
	if size >= 1<<32 || page>>12 >= 1<<12 || page&0xfff != 0 {
		return bootCode{}, fmt.Errorf("scratch mapping of %d bytes (page %d) not supported", size, page)
	}
	build := func(savedAt uint64) (*asm, bootCode) {
		a := newAsm(addr)
		var bc bootCode
		bc.entry = a.pc()
		a.movz(x0, 0)
		a.mov32(x1, size)
		a.movz(x2, 3)         // PROT_READ|PROT_WRITE
		a.movz(x3, 0x22)      // MAP_PRIVATE|MAP_ANONYMOUS
		a.op(0x92800000 | x4) // movn x4,#0 (fd -1)
		a.movz(x5, 0)
		a.movz(x8, sysMmap)
		a.svc()
		bc.mmapPC = a.pc()
		a.op(0xb13ffc1f)              // cmn x0,#4095
		a.br19(0x54000002, "restore") // b.hs restore (an error code)
		a.mov(x19, x0)
		a.mov32(x1, page)
		a.movz(x2, 5) // PROT_READ|PROT_EXEC
		a.movz(x8, sysMprotect)
		a.svc()
		bc.mprotectPC = a.pc()
		a.cbnz(x0, "unmap")
		a.op(0x91400000 | uint32(page>>12)<<10 | x19<<5 | x21) // add x21,x19,#page
		a.movz(x20, 200)
		a.label("wait")
		a.ldrW(x16, x21, dGo)
		a.op(0x7100061f)         // cmp w16,#1
		a.br19(0x54000000, "go") // b.eq go
		a.cbnzW(x16, "unmap")    // 2: the tracer aborted
		a.strX(xzr, x21, dTv)
		a.movz(x16, 1000000&0xffff)
		a.movk16(x16, 1000000>>16)
		a.strX(x16, x21, dTv+8)
		a.movz(x0, 0)
		a.movz(x1, 0)
		a.movz(x2, 0)
		a.movz(x3, 0)
		a.addImm(x4, x21, dTv)
		a.movz(x5, 0)
		a.movz(x8, sysPselect6)
		a.svc()
		a.op(0x71000694) // subs w20,w20,#1
		a.bne("wait")
		a.label("unmap")
		a.mov(x0, x19)
		a.mov32(x1, size)
		a.movz(x8, sysMunmap)
		a.svc()
		a.label("restore")
		a.adr(x16, savedAt)
		a.ldrX(x17, x16, 31*8) // sp
		a.op(0x9100023f)       // mov sp,x17
		a.ldrX(x17, x16, 33*8) // pstate
		a.op(0xd51b4200 | x17) // msr nzcv,x17
		for r := uint32(0); r < 16; r += 2 {
			a.op(0xa9400000 | (r)<<15 | (r+1)<<10 | x16<<5 | r) // ldp xr,xr+1,[x16,#8r]
		}
		a.ldrX(x17, x16, 17*8)
		for r := uint32(18); r < 30; r += 2 {
			a.op(0xa9400000 | (r)<<15 | (r+1)<<10 | x16<<5 | r)
		}
		a.ldrX(30, x16, 30*8)
		a.ldrX(x16, x16, 32*8) // pc
		a.br(x16)
		a.label("go")
		a.br(x19) // the chain, at the start of the code page
		if len(a.w)%2 != 0 {
			a.op(0xd503201f) // nop: the register block is 8-aligned
		}
		return a, bc
	}
	a, _ := build(addr)
	savedAt := a.pc()
	a, bc := build(savedAt)
	b, err := a.finish()
	if err != nil {
		return bc, err
	}
	b = append(b, savedBlock(final)...)
	bc.code = append(b, caveMagic...)
	return bc, nil
}

// faultInstr is an instruction that always faults (udf #0: SIGILL), for
// the tests of a chain that faults.
var faultInstr = []byte{0, 0, 0, 0}
