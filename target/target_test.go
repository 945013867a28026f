package target

import (
	"debug/elf"
	"testing"
)

// TestTaskOf: a thread_id maps to the thread whose thread pointer it is:
// the same address on x86-64, the nearest pointer above it on arm64.
func TestTaskOf(t *testing.T) {
	threads := []Thread{{TID: 100, NSTID: 1, TP: 0x7000}, {TID: 101, NSTID: 2, TP: 0xa000}, {TID: 102, NSTID: 3}}
	for _, c := range []struct {
		machine elf.Machine
		id      uint64
		want    int
	}{
		{elf.EM_X86_64, 0x7000, 1},
		{elf.EM_X86_64, 0xa000, 2},
		{elf.EM_X86_64, 0x6f00, 0},
		{elf.EM_AARCH64, 0x6f00, 1},
		{elf.EM_AARCH64, 0x9000, 2},
		{elf.EM_AARCH64, 0x7000, 0},        // the pointer is past struct pthread, never at it
		{elf.EM_AARCH64, 0x7000 - 9000, 0}, // too far below any pointer
	} {
		got, ok := TaskOf(c.machine, threads)(c.id)
		if got != c.want || ok != (c.want != 0) {
			t.Errorf("%v: TaskOf(%#x) = %d, %v; want %d", c.machine, c.id, got, ok, c.want)
		}
	}
	if TaskOf(elf.EM_X86_64, []Thread{{TID: 1, NSTID: 1}}) != nil {
		t.Error("TaskOf without thread pointers is not nil")
	}
	maps := []Mapping{{Start: 0x1000, Offset: 0x1000, Path: "/a"}, {Start: 0x400000, Path: "/a"}}
	if b, ok := LoadBase(maps, "/a"); !ok || b != 0x400000 {
		t.Errorf("LoadBase = %#x, %v", b, ok)
	}
}
