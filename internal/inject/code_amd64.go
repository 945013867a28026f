package inject

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/target/live"
)

// x86-64 machine code, written by hand. Every instruction is listed with
// its encoding. rbx holds the data page address in the chain, the stub and
// the pending stub ("[rbx+d32]" forms use ModRM mod=10, rm=011, disp32).

type asm struct {
	b      []byte
	base   uint64
	labels map[string]int
	fix    []fixup
}

type fixup struct {
	at    int // offset of the rel32 field
	end   int // offset of the end of the instruction
	label string
}

func newAsm(base uint64) *asm { return &asm{base: base, labels: map[string]int{}} }

func (a *asm) pc() uint64        { return a.base + uint64(len(a.b)) }
func (a *asm) emit(bs ...byte)   { a.b = append(a.b, bs...) }
func (a *asm) u32(v uint32)      { a.b = binary.LittleEndian.AppendUint32(a.b, v) }
func (a *asm) label(name string) { a.labels[name] = len(a.b) }
func (a *asm) rel32To(target uint64, trailing int) {
	// rel32 is relative to the end of the instruction, which ends
	// `trailing` bytes after the rel32 field itself.
	end := a.pc() + 4 + uint64(trailing)
	a.u32(uint32(int32(int64(target - end))))
}

// modrm for [rbx+disp32] with register field reg.
func rbxDisp(reg byte) byte { return 0x80 | reg<<3 | 3 }

const (
	rax = 0
	rcx = 1
	rdx = 2
	rbx = 3
	rsp = 4
	rbp = 5
	rsi = 6
	rdi = 7
)

func (a *asm) loadQ(reg byte, off uint32)  { a.emit(0x48, 0x8b, rbxDisp(reg)); a.u32(off) } // mov reg,[rbx+off]
func (a *asm) storeQ(reg byte, off uint32) { a.emit(0x48, 0x89, rbxDisp(reg)); a.u32(off) } // mov [rbx+off],reg
func (a *asm) storeD(reg byte, off uint32) { a.emit(0x89, rbxDisp(reg)); a.u32(off) }       // mov [rbx+off],reg32
func (a *asm) loadD(reg byte, off uint32)  { a.emit(0x8b, rbxDisp(reg)); a.u32(off) }       // mov reg32,[rbx+off]
func (a *asm) callM(off uint32)            { a.emit(0xff, rbxDisp(2)); a.u32(off) }         // call [rbx+off]  (ff /2)
func (a *asm) setPath(v uint32) { // mov qword [rbx+dPath],imm32
	a.emit(0x48, 0xc7, rbxDisp(0))
	a.u32(dPath)
	a.u32(v)
}
func (a *asm) testRax() { a.emit(0x48, 0x85, 0xc0) } // test rax,rax
func (a *asm) testEax() { a.emit(0x85, 0xc0) }       // test eax,eax
func (a *asm) jcc(op byte, l string) { // jz: 0f 84 rel32, jnz: 0f 85 rel32
	a.emit(0x0f, op)
	a.fix = append(a.fix, fixup{at: len(a.b), end: len(a.b) + 4, label: l})
	a.u32(0)
}
func (a *asm) jmp(l string) { // jmp rel32: e9
	a.emit(0xe9)
	a.fix = append(a.fix, fixup{at: len(a.b), end: len(a.b) + 4, label: l})
	a.u32(0)
}

const (
	jz  = 0x84
	jnz = 0x85
)

func (a *asm) finish() ([]byte, error) {
	for _, f := range a.fix {
		t, ok := a.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("assembling: undefined label %q", f.label)
		}
		binary.LittleEndian.PutUint32(a.b[f.at:], uint32(int32(t-f.end)))
	}
	return a.b, nil
}

const (
	sysSelect    = 23
	sysNanosleep = 35
	sysMmap      = 9
	sysMprotect  = 10
	sysMunmap    = 11
	sysRestart   = 219 // restart_syscall
)

// genCode assembles the code page for a mapping at base whose data page
// is at data.
func genCode(base, data uint64) ([]byte, codeAddrs, error) {
	a := newAsm(base)
	var ca codeAddrs

	// ---- chain: run on the borrowed thread, rsp 16-byte aligned, no return.
	ca.chain = a.pc()
	ca.code = base
	a.emit(0x48, 0x8d, 0x1d) // lea rbx,[rip+rel32]
	a.rel32To(data, 0)
	// Save the thread's errno: the C calls below may change it, and the
	// thread may be between a failing call and its read of errno.
	a.loadQ(rax, dErrnoLoc) // mov rax,[rbx+dErrnoLoc]
	a.testRax()
	a.jcc(jz, "noerrno")
	a.emit(0xff, 0xd0)       // call rax            __errno_location()
	a.storeQ(rax, dErrnoPtr) // mov [rbx+dErrnoPtr],rax
	a.emit(0x8b, 0x00)       // mov eax,[rax]
	a.storeD(rax, dErrnoVal) // mov [rbx+dErrnoVal],eax
	a.label("noerrno")
	a.loadQ(rax, dThreadsInit) // mov rax,[rbx+dThreadsInit]
	a.testRax()                // test rax,rax
	a.jcc(jz, "normal")        // no legacy check: start the thread
	a.emit(0xff, 0xd0)         // call rax            PyEval_ThreadsInitialized()
	a.testEax()                // test eax,eax
	a.jcc(jnz, "normal")       // initialised: start the thread
	a.loadQ(rax, dIsMain)      // mov rax,[rbx+dIsMain]
	a.testRax()
	a.jcc(jz, "notmain")
	a.loadQ(rax, dCurrentAddr) // mov rax,[rbx+dCurrentAddr]
	a.emit(0x48, 0x8b, 0x00)   // mov rax,[rax]       _PyThreadState_Current
	a.testRax()
	a.jcc(jnz, "busy")   // main thread runs Python: pending call
	a.callM(dInterpHead) // call [rbx+dInterpHead]   PyInterpreterState_Head()
	a.testRax()
	a.jcc(jz, "nostate")
	a.emit(0x48, 0x89, 0xc7) // mov rdi,rax
	a.callM(dThreadHead)     // PyInterpreterState_ThreadHead(interp)
	a.testRax()
	a.jcc(jz, "nostate")
	a.emit(0x48, 0x89, 0xc7) // mov rdi,rax
	a.callM(dRestore)        // PyEval_RestoreThread(tstate)
	a.callM(dInitThreads)    // PyEval_InitThreads()
	a.callM(dSave)           // PyEval_SaveThread()
	a.setPath(pathInitStart)
	a.jmp("start")
	a.label("busy")
	a.loadQ(rdi, dPending)   // mov rdi,[rbx+dPending]
	a.emit(0x48, 0x89, 0xde) // mov rsi,rbx
	a.callM(dAddPending)     // Py_AddPendingCall(pending, data)
	a.emit(0x48, 0x63, 0xc0) // movsxd rax,eax
	a.storeQ(rax, dResult)   // mov [rbx+dResult],rax
	a.setPath(pathPending)
	a.jmp("marker")
	a.label("notmain")
	a.setPath(pathNoThreads)
	a.jmp("marker")
	a.label("nostate")
	a.setPath(pathNoTstate)
	a.jmp("marker")
	a.label("normal")
	a.setPath(pathStarted)
	a.label("start")
	a.loadQ(rax, dPthreadCreate) // mov rax,[rbx+dPthreadCreate]
	a.testRax()
	a.jcc(jz, "pystart")
	a.emit(0x48, 0x8d, rbxDisp(rdi)) // lea rdi,[rbx+dAttr]
	a.u32(dAttr)
	a.callM(dAttrInit)               // pthread_attr_init(&attr)
	a.emit(0x48, 0x8d, rbxDisp(rdi)) // lea rdi,[rbx+dAttr]
	a.u32(dAttr)
	a.loadQ(rsi, dStackSize)         // mov rsi,[rbx+dStackSize]
	a.callM(dAttrSetStack)           // pthread_attr_setstacksize(&attr, size)
	a.emit(0x48, 0x8d, rbxDisp(rdi)) // lea rdi,[rbx+dTid]
	a.u32(dTid)
	a.emit(0x48, 0x8d, rbxDisp(rsi)) // lea rsi,[rbx+dAttr]
	a.u32(dAttr)
	a.loadQ(rdx, dStub)            // mov rdx,[rbx+dStub]
	a.emit(0x48, 0x89, 0xd9)       // mov rcx,rbx
	a.emit(0x48, 0xc7, rbxDisp(0)) // mov qword [rbx+dViaPthread],1
	a.u32(dViaPthread)
	a.u32(1)
	a.callM(dPthreadCreate)  // pthread_create(&tid, &attr, stub, data)
	a.emit(0x48, 0x63, 0xc0) // movsxd rax,eax
	a.storeQ(rax, dResult)   // mov [rbx+dResult],rax
	a.testRax()
	a.jcc(jnz, "marker")
	a.loadQ(rdi, dTid)      // mov rdi,[rbx+dTid]
	a.callM(dPthreadDetach) // pthread_detach(tid)
	a.jmp("marker")
	a.label("pystart")
	a.loadQ(rdi, dStub)      // mov rdi,[rbx+dStub]
	a.emit(0x48, 0x89, 0xde) // mov rsi,rbx
	a.callM(dStart)          // PyThread_start_new_thread(stub, data)
	a.storeQ(rax, dResult)   // mov [rbx+dResult],rax
	a.label("marker")
	a.loadQ(rcx, dErrnoPtr)  // mov rcx,[rbx+dErrnoPtr]
	a.emit(0x48, 0x85, 0xc9) // test rcx,rcx
	a.jcc(jz, "errnokept")
	a.loadD(rax, dErrnoVal) // mov eax,[rbx+dErrnoVal]
	a.emit(0x89, 0x01)      // mov [rcx],eax       errno restored
	a.label("errnokept")
	// Tell the tracer we are done, then wait for it (it interrupts us and
	// restores the registers) in select(0,0,0,0,&1ms) at most 200 times.
	// select returns ERESTARTNOHAND when interrupted and, unlike
	// nanosleep, leaves the thread's restart_block (which may belong to
	// the syscall we interrupted) alone.
	a.emit(0xc7, rbxDisp(0)) // mov dword [rbx+dReady],1
	a.u32(dReady)
	a.u32(1)
	a.emit(0x41, 0xbc) // mov r12d,200
	a.u32(200)
	a.label("await")
	a.emit(0x48, 0xc7, rbxDisp(0)) // mov qword [rbx+dTv],0        tv_sec
	a.u32(dTv)
	a.u32(0)
	a.emit(0x48, 0xc7, rbxDisp(0)) // mov qword [rbx+dTv+8],1000   tv_usec
	a.u32(dTv + 8)
	a.u32(1000)
	a.emit(0x31, 0xff)             // xor edi,edi
	a.emit(0x31, 0xf6)             // xor esi,esi
	a.emit(0x31, 0xd2)             // xor edx,edx
	a.emit(0x45, 0x31, 0xd2)       // xor r10d,r10d
	a.emit(0x4c, 0x8d, rbxDisp(0)) // lea r8,[rbx+dTv]
	a.u32(dTv)
	a.emit(0xb8) // mov eax,23 (select)
	a.u32(sysSelect)
	a.emit(0x0f, 0x05)       // syscall
	a.emit(0x41, 0xff, 0xcc) // dec r12d
	a.jcc(jnz, "await")
	// Untraced restore: reached only when no tracer came within 200 ms
	// (pyglass died or gave up). Reloads the vector registers (XRSTOR of
	// the XSAVE image the tracer read, all components but AMX's), pops
	// the saved registers and flags from the data page, marks done=2 (the
	// stub then leaves the mapping), switches back to the original stack
	// and jumps to the original PC.
	a.loadQ(rcx, dFPState)   // mov rcx,[rbx+dFPState]
	a.emit(0x48, 0x85, 0xc9) // test rcx,rcx
	a.jcc(jz, "nofp")
	a.emit(0xb8) // mov eax,fpRestoreMaskLo
	a.u32(uint32(fpRestoreMask & 0xffffffff))
	a.emit(0xba) // mov edx,fpRestoreMaskHi
	a.u32(uint32(fpRestoreMask >> 32))
	a.emit(0x48, 0x0f, 0xae, 0x29) // xrstor64 [rcx]
	a.label("nofp")
	a.emit(0x48, 0x8d, 0x25) // lea rsp,[rip+rel32]
	a.rel32To(data+dSaved, 0)
	a.emit(0x58, 0x5b, 0x59, 0x5a, 0x5e, 0x5f, 0x5d) // pop rax,rbx,rcx,rdx,rsi,rdi,rbp
	for r := byte(0); r < 8; r++ {
		a.emit(0x41, 0x58+r) // pop r8..r15
	}
	a.emit(0x9d)       // popfq
	a.emit(0xc7, 0x05) // mov dword [rip+rel32],2
	a.rel32To(data+dDone, 4)
	a.u32(2)
	a.emit(0x48, 0x8b, 0x25) // mov rsp,[rip+rel32]
	a.rel32To(data+dSavedSP, 0)
	a.emit(0xff, 0x25) // jmp [rip+rel32]
	a.rel32To(data+dSavedPC, 0)

	// ---- stub(data): entry of the new thread (called by the thread
	// library: rsp = 8 mod 16, return address on the stack).
	for len(a.b)%16 != 0 {
		a.emit(0xcc)
	}
	ca.stub = a.pc()
	a.emit(0xf3, 0x0f, 0x1e, 0xfa) // endbr64
	a.emit(0x53)                   // push rbx
	a.emit(0x41, 0x54)             // push r12
	a.emit(0x48, 0x83, 0xec, 0x08) // sub rsp,8      (rsp = 0 mod 16)
	a.emit(0x48, 0x89, 0xfb)       // mov rbx,rdi
	a.callM(dEnsure)               // PyGILState_Ensure()
	a.storeD(rax, dGilState)       // mov [rbx+dGilState],eax
	a.loadQ(rdi, dSrc)             // mov rdi,[rbx+dSrc]
	a.callM(dRun)                  // PyRun_SimpleString(src)
	a.storeD(rax, dRunResult)      // mov [rbx+dRunResult],eax
	a.loadD(rdi, dGilState)        // mov edi,[rbx+dGilState]
	a.callM(dRelease)              // PyGILState_Release(state)
	a.emit(0x41, 0xbc)             // mov r12d,10000: wait at most ~10 s for done
	a.u32(10000)
	a.label("wait")
	a.loadD(rax, dDone) // mov eax,[rbx+dDone]
	a.testEax()
	a.jcc(jnz, "ready")
	a.emit(0x48, 0x8d, rbxDisp(rdi)) // lea rdi,[rbx+dTimespec]
	a.u32(dTimespec)
	a.emit(0x31, 0xf6) // xor esi,esi
	a.emit(0xb8)       // mov eax,35 (nanosleep)
	a.u32(sysNanosleep)
	a.emit(0x0f, 0x05)       // syscall
	a.emit(0x41, 0xff, 0xcc) // dec r12d
	a.jcc(jnz, "wait")
	a.jmp("leak")
	a.label("ready")
	a.emit(0x83, 0xf8, 0x01) // cmp eax,1: only a tracer-restored thread is surely out of the page
	a.jcc(jnz, "leak")
	a.loadQ(rax, dMunmap) // mov rax,[rbx+dMunmap]
	a.testRax()
	a.jcc(jz, "leak")
	a.loadQ(rdi, dBase)            // mov rdi,[rbx+dBase]
	a.loadQ(rsi, dLen)             // mov rsi,[rbx+dLen]
	a.emit(0x48, 0x83, 0xc4, 0x08) // add rsp,8
	a.emit(0x41, 0x5c)             // pop r12
	a.emit(0x5b)                   // pop rbx
	a.emit(0xff, 0xe0)             // jmp rax: munmap(base,len) returns to our caller
	a.label("leak")
	a.emit(0x48, 0x83, 0xc4, 0x08) // add rsp,8
	a.emit(0x41, 0x5c)             // pop r12
	a.emit(0x5b)                   // pop rbx
	a.emit(0x31, 0xc0)             // xor eax,eax
	a.emit(0xc3)                   // ret

	// ---- pending(data) int: run by the main thread at a safe point.
	for len(a.b)%16 != 0 {
		a.emit(0xcc)
	}
	ca.pending = a.pc()
	a.emit(0xf3, 0x0f, 0x1e, 0xfa) // endbr64
	a.emit(0x53)                   // push rbx     (rsp = 0 mod 16)
	a.emit(0x48, 0x89, 0xfb)       // mov rbx,rdi
	a.callM(dInitThreads)          // PyEval_InitThreads()
	a.loadQ(rdi, dStub)            // mov rdi,[rbx+dStub]
	a.emit(0x48, 0x89, 0xde)       // mov rsi,rbx
	a.callM(dStart)                // PyThread_start_new_thread(stub, data)
	a.storeQ(rax, dResult)         // mov [rbx+dResult],rax
	a.emit(0x31, 0xc0)             // xor eax,eax
	a.emit(0x5b)                   // pop rbx
	a.emit(0xc3)                   // ret
	ca.codeEnd = a.pc()
	b, err := a.finish()
	return b, ca, err
}

// The FP image is the NT_X86_XSTATE regset: XSAVE's standard format,
// which XRSTOR loads from a 64-byte aligned address. fpReserve bounds it
// (AVX-512 needs 2,696 bytes, AMX 11,008).
const (
	fpAlign   = 64
	fpReserve = 12 << 10
	// fpRestoreMask: every state component but AMX's tile
	// configuration and data (17, 18), which the chain never touches and
	// which XRSTOR may refuse when the kernel has not enabled them for
	// the thread.
	fpRestoreMask = ^uint64(0) &^ (1<<17 | 1<<18)
)

// fpImageUsable: the image is an XSAVE area XRSTOR accepts (standard
// format: XCOMP_BV, at 520, is 0) that fits the reserved room.
func fpImageUsable(fp []byte) bool {
	return len(fp) >= 576 && len(fp) <= fpReserve && binary.LittleEndian.Uint64(fp[520:]) == 0
}

// savedBlock is what the untraced restore path pops: rax, rbx, rcx, rdx,
// rsi, rdi, rbp, r8..r15, rflags (in that order) at dSaved. The flags are
// the thread's own (its direction flag included, which only the chain's
// C calls need clear), less the trap flag.
func savedBlock(r *ptrace.Regs) []byte {
	vals := []uint64{r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.Rbp,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.Eflags &^ flagTF}
	var out []byte
	for _, v := range vals {
		out = binary.LittleEndian.AppendUint64(out, v)
	}
	return out
}

// Flags the thread runs our code without: single-stepping, and the
// direction flag the C calling convention wants clear.
const (
	flagTF       = 1 << 8
	flagDF       = 1 << 10
	flagsCleared = flagTF | flagDF
)

// Syscalls a borrowed thread must not be in: it may be inside the
// allocator or the dynamic loader, whose locks we may need.
var forbiddenSyscalls = map[int]string{9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk", 25: "mremap", 28: "madvise"}

// inSyscall reports whether a thread stopped with r is at a syscall
// boundary (orig_rax >= 0), and which syscall.
func inSyscall(r *ptrace.Regs, _ *live.Process) (int, bool) {
	if int64(r.Orig_rax) < 0 {
		return -1, false
	}
	return int(r.Orig_rax), true
}

// syscallGadgetHere returns the address of the syscall instruction the
// thread just executed, if the thread stopped in a syscall (0 otherwise).
func syscallGadgetHere(r *ptrace.Regs) uint64 {
	if int64(r.Orig_rax) >= 0 {
		return r.Rip - 2
	}
	return 0
}

// restoredRegs returns the registers to give back to the thread at a
// syscall stop: the saved ones, with the kernel's syscall restart applied
// when the thread had been interrupted in a restartable syscall. With
// restartEINTR, a call of ptrace.EINTRSyscalls that the stop ended with
// EINTR (epoll_wait, semop...) is run again too, as ptrace.RewindEINTR
// has the kernel do after a pause: the caller clears it when a signal
// with a handler was pending, which would have ended the call anyway.
func restoredRegs(saved ptrace.Regs, restartEINTR bool) ptrace.Regs {
	r := saved
	if nr := int64(r.Orig_rax); nr >= 0 {
		_, eintrCall := ptrace.EINTRSyscalls[int(nr)]
		switch rax := int64(r.Rax); {
		case rax == -512, rax == -513, rax == -514, // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND
			restartEINTR && eintrCall && rax == -int64(syscall.EINTR):
			r.Rip -= 2
			r.Rax = r.Orig_rax
		case rax == -516: // ERESTART_RESTARTBLOCK
			r.Rip -= 2
			r.Rax = sysRestart
		}
	}
	r.Orig_rax = ^uint64(0)
	return r
}

// deliversWithSiginfo says whether release hands held signals over with
// their siginfo (deliverHeld): restoredRegs's restart can be undone for a
// signal with a handler.
const deliversWithSiginfo = true

// callRegs sends the thread into the chain on a fresh aligned stack below
// the red zone.
func callRegs(saved ptrace.Regs, chain uint64) ptrace.Regs {
	r := saved
	r.Rsp = (saved.Rsp - 128) &^ 15
	r.Rip = chain
	r.Rax = 0
	r.Orig_rax = ^uint64(0)
	r.Eflags &^= flagsCleared
	return r
}

// syscallRegs prepares a syscall executed at gadget.
func syscallRegs(saved ptrace.Regs, gadget uint64, nr uint64, args ...uint64) ptrace.Regs {
	r := saved
	r.Rip = gadget
	r.Rax = nr
	r.Orig_rax = ^uint64(0)
	var a [6]uint64
	copy(a[:], args)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	r.Eflags &^= flagsCleared
	return r
}

func syscallResult(r *ptrace.Regs) uint64 { return r.Rax }

// syscallPC is the PC a thread reports at the stops of a syscall executed
// at gadget.
func syscallPC(gadget uint64) uint64 { return gadget + 2 }

func setSavedSPPC(r *ptrace.Regs) (sp, pc uint64) { return r.Rsp, r.Rip }

func shadowStackEnabled(features string) bool { return containsWord(features, "shstk") }

const gadgetAlign = 1 // a syscall instruction may start at any byte

// ripRef emits a rel32 field addressing label (for instructions that end
// right after their rel32 field).
func (a *asm) ripRef(l string) {
	a.fix = append(a.fix, fixup{at: len(a.b), end: len(a.b) + 4, label: l})
	a.u32(0)
}

// genBoot assembles the cave bootstrap at addr for a scratch mapping of
// size bytes whose first page (of page bytes) is code and whose second is
// the data page. final is the register set the thread is restored to.
func genBoot(addr, size, page uint64, final *ptrace.Regs) (bootCode, error) {
	a := newAsm(addr)
	var bc bootCode
	bc.entry = a.pc()
	// mmap(0, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
	a.emit(0x31, 0xff) // xor edi,edi
	a.emit(0xbe)       // mov esi,size
	a.u32(uint32(size))
	a.emit(0xba, 3, 0, 0, 0)                         // mov edx,3
	a.emit(0x41, 0xba, 0x22, 0, 0, 0)                // mov r10d,0x22
	a.emit(0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff) // mov r8,-1
	a.emit(0x45, 0x31, 0xc9)                         // xor r9d,r9d
	a.emit(0xb8)                                     // mov eax,9
	a.u32(sysMmap)
	a.emit(0x0f, 0x05) // syscall
	bc.mmapPC = a.pc()
	a.emit(0x48, 0x3d) // cmp rax,-4095
	a.u32(uint32(0xfffff001))
	a.jcc(0x83, "restore")   // jae restore (an error code)
	a.emit(0x48, 0x89, 0xc3) // mov rbx,rax
	// mprotect(rbx, page, PROT_READ|PROT_EXEC)
	a.emit(0x48, 0x89, 0xdf) // mov rdi,rbx
	a.emit(0xbe)             // mov esi,page
	a.u32(uint32(page))
	a.emit(0xba, 5, 0, 0, 0) // mov edx,5
	a.emit(0xb8)             // mov eax,10
	a.u32(sysMprotect)
	a.emit(0x0f, 0x05) // syscall
	bc.mprotectPC = a.pc()
	a.testRax()
	a.jcc(jnz, "unmap")
	a.emit(0x41, 0xbc) // mov r12d,200
	a.u32(200)
	a.label("wait")
	a.loadD(rax, uint32(page+dGo)) // mov eax,[rbx+page+dGo]
	a.emit(0x83, 0xf8, 0x01)       // cmp eax,1
	a.jcc(jz, "go")
	a.testEax()
	a.jcc(jnz, "unmap")            // 2: the tracer aborted
	a.emit(0x48, 0xc7, rbxDisp(0)) // mov qword [rbx+page+dTv],0
	a.u32(uint32(page + dTv))
	a.u32(0)
	a.emit(0x48, 0xc7, rbxDisp(0)) // mov qword [rbx+page+dTv+8],1000
	a.u32(uint32(page + dTv + 8))
	a.u32(1000)
	a.emit(0x31, 0xff)             // xor edi,edi
	a.emit(0x31, 0xf6)             // xor esi,esi
	a.emit(0x31, 0xd2)             // xor edx,edx
	a.emit(0x45, 0x31, 0xd2)       // xor r10d,r10d
	a.emit(0x4c, 0x8d, rbxDisp(0)) // lea r8,[rbx+page+dTv]
	a.u32(uint32(page + dTv))
	a.emit(0xb8) // mov eax,23 (select)
	a.u32(sysSelect)
	a.emit(0x0f, 0x05)       // syscall
	a.emit(0x41, 0xff, 0xcc) // dec r12d
	a.jcc(jnz, "wait")
	a.label("unmap")
	a.emit(0x48, 0x89, 0xdf) // mov rdi,rbx
	a.emit(0xbe)             // mov esi,size
	a.u32(uint32(size))
	a.emit(0xb8) // mov eax,11
	a.u32(sysMunmap)
	a.emit(0x0f, 0x05) // syscall
	a.label("restore")
	a.emit(0x48, 0x8d, 0x25) // lea rsp,[rip+saved]
	a.ripRef("saved")
	a.emit(0x58, 0x5b, 0x59, 0x5a, 0x5e, 0x5f, 0x5d) // pop rax,rbx,rcx,rdx,rsi,rdi,rbp
	for r := byte(0); r < 8; r++ {
		a.emit(0x41, 0x58+r) // pop r8..r15
	}
	a.emit(0x9d)             // popfq
	a.emit(0x48, 0x8b, 0x25) // mov rsp,[rip+savedSP]
	a.ripRef("savedSP")
	a.emit(0xff, 0x25) // jmp [rip+savedPC]
	a.ripRef("savedPC")
	a.label("go")
	a.emit(0xff, 0xe3) // jmp rbx: the chain, at the start of the code page
	for len(a.b)%8 != 0 {
		a.emit(0xcc)
	}
	a.label("saved")
	a.emit(savedBlock(final)...)
	sp, pc := setSavedSPPC(final)
	a.label("savedSP")
	a.b = binary.LittleEndian.AppendUint64(a.b, sp)
	a.label("savedPC")
	a.b = binary.LittleEndian.AppendUint64(a.b, pc)
	a.emit(caveMagic...)
	if size > 1<<31 || page+dSaved > 1<<31 {
		return bc, fmt.Errorf("scratch mapping of %d bytes too large", size)
	}
	b, err := a.finish()
	bc.code = b
	return bc, err
}

// faultInstr is an instruction that always faults (ud2: SIGILL), for the
// tests of a chain that faults.
var faultInstr = []byte{0x0f, 0x0b}
