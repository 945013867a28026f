package inject

import (
	"encoding/binary"
	"fmt"
)

// gateCode is the machine code of a gate (see gate.go) and where its
// parts are.
type gateCode struct {
	code  []byte
	entry uint64 // what the patched GOT slots point to
	state uint64 // the 4-byte state word: 1 open, 0 closed
}

// genGate assembles a gate at addr that forwards to real (the
// interpreter's PyEval_RestoreThread). It lives in a read-only code cave,
// so it never writes memory but its own stack: while the state word is 1
// and CLOCK_MONOTONIC is before deadline (ns), for at most waits rounds, a
// thread entering it sleeps 1 ms in nanosleep, where pyglass can borrow
// it; then it jumps to real with its argument registers unchanged.
func genGate(addr, real, deadline uint64, waits uint32) (gateCode, error) {
	a := newAsm(addr)
	var g gateCode
	g.entry = a.pc()
	ripImm8 := func(l string, imm byte) { // a rel32 field followed by an imm8
		a.fix = append(a.fix, fixup{at: len(a.b), end: len(a.b) + 5, label: l})
		a.u32(0)
		a.emit(imm)
	}
	a.emit(0xf3, 0x0f, 0x1e, 0xfa) // endbr64 (a nop without CET)
	a.emit(0x83, 0x3d)             // cmp dword [rip+state],1
	ripImm8("state", 1)
	a.jcc(jnz, "out")
	a.emit(0x57, 0x56) // push rdi; push rsi
	a.emit(0x68)       // push waits (the round counter, at [rsp+16] below)
	a.u32(waits)
	a.emit(0x48, 0x83, 0xec, 0x10) // sub rsp,16 (a timespec at [rsp])
	a.label("loop")
	a.emit(0xb8) // mov eax,228 (clock_gettime)
	a.u32(228)
	a.emit(0xbf, 1, 0, 0, 0)                      // mov edi,1 (CLOCK_MONOTONIC)
	a.emit(0x48, 0x89, 0xe6)                      // mov rsi,rsp
	a.emit(0x0f, 0x05)                            // syscall
	a.emit(0x48, 0x8b, 0x04, 0x24)                // mov rax,[rsp]
	a.emit(0x48, 0x69, 0xc0, 0, 0xca, 0x9a, 0x3b) // imul rax,rax,1000000000
	a.emit(0x48, 0x03, 0x44, 0x24, 0x08)          // add rax,[rsp+8]
	a.emit(0x48, 0x3b, 0x05)                      // cmp rax,[rip+deadline]
	a.ripRef("deadline")
	a.jcc(0x83, "done") // jae done
	a.emit(0x83, 0x3d)  // cmp dword [rip+state],1
	ripImm8("state", 1)
	a.jcc(jnz, "done")
	a.emit(0x48, 0xff, 0x4c, 0x24, 0x10) // dec qword [rsp+16]
	a.jcc(jz, "done")
	a.emit(0x48, 0x8d, 0x3d) // lea rdi,[rip+ts]
	a.ripRef("ts")
	a.emit(0x31, 0xf6) // xor esi,esi
	a.emit(0xb8)       // mov eax,35 (nanosleep)
	a.u32(sysNanosleep)
	a.emit(0x0f, 0x05) // syscall: the thread parks here
	a.jmp("loop")
	a.label("done")
	a.emit(0x48, 0x83, 0xc4, 0x18) // add rsp,24
	a.emit(0x5e, 0x5f)             // pop rsi; pop rdi
	a.label("out")
	a.emit(0xff, 0x25) // jmp [rip+real]
	a.ripRef("real")
	for len(a.b)%8 != 0 {
		a.emit(0xcc)
	}
	a.label("state")
	g.state = a.pc()
	a.b = binary.LittleEndian.AppendUint64(a.b, 1)
	a.label("deadline")
	a.b = binary.LittleEndian.AppendUint64(a.b, deadline)
	a.label("real")
	a.b = binary.LittleEndian.AppendUint64(a.b, real)
	a.label("ts")
	a.b = binary.LittleEndian.AppendUint64(a.b, 0)
	a.b = binary.LittleEndian.AppendUint64(a.b, 1000000)
	a.emit(caveMagic...)
	a.b = binary.LittleEndian.AppendUint64(a.b, gateStamp)
	b, err := a.finish()
	if err != nil {
		return g, fmt.Errorf("assembling the gate: %w", err)
	}
	g.code = b
	return g, nil
}

// gateRelocType is R_X86_64_JUMP_SLOT.
const gateRelocType = 7
