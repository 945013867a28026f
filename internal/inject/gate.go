package inject

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/target/live"
	"golang.org/x/sys/unix"
)

// A gate makes a thread that runs C code outside the interpreter (with
// the GIL released: a hashlib update, a numpy loop, a ctypes call) stop at
// a safe place as soon as it leaves that code. Such a thread is never
// borrowed where it runs (it could hold a lock of libc), and sampling it
// rarely finds it anywhere else.
//
// A C extension re-takes the GIL by calling PyEval_RestoreThread through
// its PLT, that is through a GOT slot (an R_*_JUMP_SLOT relocation) that
// holds the function's address. While the gate is open, those slots (in
// every loaded object) point to gate code written in a code cave; a
// thread calling through one enters the gate, which, while the gate is
// open and pyglass's deadline has not passed, sleeps in nanosleep(1 ms)
// loops: blocked in a system call at the entry of an interpreter
// function, holding no lock of libc and not the GIL: a thread pyglass
// borrows. Then it jumps to the real PyEval_RestoreThread with its
// argument registers unchanged. A slot is used only through "jmp [slot]",
// which reads it in one load, and it is written (both ways) while every
// thread of the process is stopped (ptrace.Freeze), so no thread ever
// reads half a pointer.
//
// If pyglass dies while the gate is open the slots keep pointing to the
// gate, which forwards at once once the deadline has passed (for a target
// in another time namespace, after at most waits rounds): the cost left
// is one clock_gettime system call per PyEval_RestoreThread call from an
// extension. Its cave ends with caveMagic and gateStamp, so that no later
// bootstrap overwrites it.
type gate struct {
	cave  *cave
	gc    gateCode
	real  uint64
	slots []uint64 // GOT slots that point to the gate
}

// gateStamp after caveMagic marks a gate: a cave holding it is never
// taken (it is older than any bootstrap can be, as int64 arithmetic sees
// it: caveStale finds it in the future).
const gateStamp = uint64(1) << 63

// gateAfterRounds is how many rounds of looking for a thread pick makes
// before it opens the gate.
const gateAfterRounds = 3

// maxGateObjects bounds how many loaded files are searched for slots.
const maxGateObjects = 512

func (j *job) openGate() {
	if j.gate != nil || j.syms.PyEvalRestoreThread == 0 || len(j.outside) == 0 {
		return
	}
	if tid := j.eintrBlocked(); tid != 0 {
		j.logf("gate: not opened, thread %d would see EINTR if stopped", tid)
		return
	}
	t0 := time.Now()
	slots := jumpSlots(j.mem, j.pid, "PyEval_RestoreThread", j.syms.PyEvalRestoreThread, j.page)
	if len(slots) == 0 {
		j.logf("gate: no GOT slot of PyEval_RestoreThread found")
		return
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return
	}
	left := time.Until(j.deadline)
	deadline := uint64(now.Nano()) + uint64(left)
	waits := uint32(left/time.Millisecond) + 2
	probe, err := genGate(0, 0, 0, 0)
	if err != nil {
		j.logf("gate: %v", err)
		return
	}
	var taken [][2]uint64
	if j.cave != nil {
		taken = append(taken, [2]uint64{j.cave.addr, j.cave.addr + j.cave.size})
	}
	cv := findCave(j.mem, j.pid, j.maps, uint64(len(probe.code)), j.syms.InterpreterText, taken, j.page)
	if cv == nil {
		j.logf("gate: no code cave for it")
		return
	}
	gc, err := genGate(cv.addr, j.syms.PyEvalRestoreThread, deadline, waits)
	if err != nil || uint64(len(gc.code)) != cv.size {
		j.logf("gate: %v", err)
		return
	}
	if err := j.mem.WriteForced(gc.code, cv.addr); err != nil {
		j.logf("gate: writing it: %v", err)
		return
	}
	g := &gate{cave: cv, gc: gc, real: j.syms.PyEvalRestoreThread}
	j.gate = g
	f, err := ptrace.Freeze(j.pid)
	if err != nil {
		j.logf("gate: %v", err)
		return // closeGate puts the cave back: no slot points to it
	}
	for _, s := range slots {
		if swapWord(j.mem, s.addr, s.holds, g.gc.entry) {
			g.slots = append(g.slots, s.addr)
		}
	}
	f.Thaw()
	j.logf("gate open at %#x (%s), %d GOT slots, in %v", gc.entry, cv.file, len(g.slots), time.Since(t0))
}

// swapWord writes new at addr if it holds old.
func swapWord(mem *live.Process, addr, old, new uint64) bool {
	var b [8]byte
	if _, err := mem.ReadAt(b[:], addr); err != nil || binary.LittleEndian.Uint64(b[:]) != old {
		return false
	}
	binary.LittleEndian.PutUint64(b[:], new)
	return mem.WriteForced(b[:], addr) == nil
}

// inGate reports whether pc is in the gate's code.
func (j *job) inGate(pc uint64) bool {
	return j.gate != nil && pc >= j.gate.gc.entry && pc < j.gate.gc.state
}

// closeGate puts every slot back and closes the gate (all threads
// stopped), then puts the cave's bytes back once no thread is in it. A
// thread sleeping there leaves within a millisecond of the close; if one
// is still there after a few tries the gate stays in its cave, closed.
func (j *job) closeGate() {
	g := j.gate
	if g == nil {
		return
	}
	j.gate = nil
	var zero [4]byte
	if tid := j.eintrBlocked(); tid != 0 {
		// Stopping every thread would make that call fail: close the
		// gate only (the slots forward through it).
		j.mem.WriteForced(zero[:], g.gc.state)
		j.logf("gate: thread %d would see EINTR if stopped; left in its cave, closed", tid)
		return
	}
	for try := 0; try < 20; try++ {
		if try > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		f, err := ptrace.Freeze(j.pid)
		if err != nil {
			// The target is gone, or cannot be stopped now: close the gate
			// at least (its slots forward through it).
			j.mem.WriteForced(zero[:], g.gc.state)
			j.logf("gate: %v; left in its cave, closed", err)
			return
		}
		for _, s := range g.slots {
			swapWord(j.mem, s, g.gc.entry, g.real)
		}
		g.slots = nil
		j.mem.WriteForced(zero[:], g.gc.state)
		inside := 0
		for _, tid := range f.Tids {
			sc, err := procfs.New(j.pid).TaskSyscall(tid)
			if err != nil || sc.Running || (sc.PC >= g.cave.addr && sc.PC < g.cave.addr+g.cave.size) {
				inside++
			}
		}
		if inside == 0 {
			err = j.mem.WriteForced(g.cave.orig, g.cave.addr)
		}
		f.Thaw()
		if inside == 0 {
			if err != nil {
				j.logf("gate: restoring its cave: %v", err)
			}
			return
		}
	}
	j.logf("gate: a thread is still in it; left in its cave, closed")
}

// eintrBlocked returns a thread blocked in a system call that fails with
// EINTR when the thread is stopped, when that matters (AvoidEINTR), or 0.
func (j *job) eintrBlocked() int {
	if !j.opt.AvoidEINTR {
		return 0
	}
	p := procfs.New(j.pid)
	tids, _ := p.TaskIDs()
	for _, tid := range tids {
		if sc, err := p.TaskSyscall(tid); err == nil && sc.InSyscall {
			if _, bad := ptrace.EINTRSyscalls[int(sc.Nr)]; bad {
				return tid
			}
		}
	}
	return 0
}

// gotSlot is a GOT slot and what it holds.
type gotSlot struct{ addr, holds uint64 }

// isGate reports whether addr is the entry of a gate left by an earlier
// pyglass (killed while it was open) that forwards to real. Its slots are
// taken over, and put back to real at the end.
func isGate(mem *live.Process, addr, real uint64) bool {
	probe, err := genGate(0, 0, 0, 0)
	if err != nil || len(probe.code) == 0 {
		return false
	}
	b := make([]byte, len(probe.code))
	if _, err := mem.ReadAt(b, addr); err != nil {
		return false
	}
	st := probe.state - probe.entry
	tag := binary.LittleEndian.AppendUint64(append([]byte(nil), caveMagic...), gateStamp)
	return bytes.Equal(b[:8], probe.code[:8]) && bytes.HasSuffix(b, tag) &&
		binary.LittleEndian.Uint64(b[st+16:]) == real
}

// jumpSlots returns the GOT slots, in every object mapped in pid, that
// JUMP_SLOT relocations of symbol fill and that hold value (or a gate
// forwarding to value) now. Objects are read from their files as the target sees them
// (procfs.OpenMapping); a slot is returned only inside a private data
// mapping of the same file.
func jumpSlots(mem *live.Process, pid int, symbol string, value, page uint64) []gotSlot {
	pr := procfs.New(pid)
	maps, err := pr.Maps()
	if err != nil {
		return nil
	}
	var out []gotSlot
	gates := map[uint64]bool{}
	seen := map[uint64]bool{} // inodes
	for _, m := range maps {
		if m.Offset != 0 || !m.IsFile() || seen[m.Inode] || len(seen) >= maxGateObjects {
			continue
		}
		seen[m.Inode] = true
		for _, s := range fileJumpSlots(pr, m, symbol, page) {
			inData := false // the GOT: rw-p, or r--p after RELRO
			for _, w := range maps {
				if w.Inode == m.Inode && w.Path == m.Path && !w.Perms.Exec && !w.Perms.Shared && s >= w.Start && s+8 <= w.End {
					inData = true
				}
			}
			var b [8]byte
			if inData && s%8 == 0 {
				if _, err := mem.ReadAt(b[:], s); err != nil {
					continue
				}
				v := binary.LittleEndian.Uint64(b[:])
				if _, known := gates[v]; !known && v != value {
					gates[v] = isGate(mem, v, value)
				}
				if v == value || gates[v] {
					out = append(out, gotSlot{s, v})
				}
			}
		}
	}
	return out
}

// fileJumpSlots reads the JUMP_SLOT relocations of symbol in the ELF file
// mapped at m (its offset-0 mapping) and returns their run-time addresses.
func fileJumpSlots(pr procfs.Proc, m procfs.Mapping, symbol string, page uint64) (out []uint64) {
	defer func() {
		if recover() != nil { // a malformed file: no slot
			out = nil
		}
	}()
	fh, _, err := pr.OpenMapping(m)
	if err != nil {
		return nil
	}
	defer fh.Close()
	f, err := elf.NewFile(fh)
	if err != nil || f.Class != elf.ELFCLASS64 {
		return nil
	}
	var bias uint64
	found := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			bias, found = m.Start-p.Vaddr&^(page-1), true
			break
		}
	}
	if !found {
		return nil
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil
	}
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_RELA || sec.Size > 16<<20 || sec.Link == 0 || int(sec.Link) >= len(f.Sections) || f.Sections[sec.Link].Type != elf.SHT_DYNSYM {
			continue
		}
		b, err := sec.Data()
		if err != nil {
			continue
		}
		for i := 0; i+24 <= len(b); i += 24 {
			off := binary.LittleEndian.Uint64(b[i:])
			info := binary.LittleEndian.Uint64(b[i+8:])
			idx := int(info >> 32)
			if uint32(info) != gateRelocType || idx == 0 || idx > len(syms) || syms[idx-1].Name != symbol {
				continue
			}
			out = append(out, bias+off)
		}
	}
	return out
}
