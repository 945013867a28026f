package core

import (
	"io"
	"testing"

	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// TestTarget: the synthetic core as a target.Target: its thread with the
// saved system call as its state and its registers, its mappings, its
// files read through the core, and its memory.
func TestTarget(t *testing.T) {
	backing := writeTemp(t, "lib.so", append(make([]byte, 0x1000), []byte("from the file")...))
	c, err := Open(writeTemp(t, "core", synth(backing)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tg := c.Target()
	if tg.PID() != 42 {
		t.Errorf("pid %d", tg.PID())
	}
	th := tg.Threads()
	want := target.Thread{TID: 42, NSTID: 42, TP: 0x7000, State: target.State{Kind: target.InSyscall, Syscall: 202, Args: [6]uint64{0x1234}, Frozen: true}}
	if len(th) != 1 || th[0] != want {
		t.Fatalf("threads %+v, want %+v", th, want)
	}
	if regs, ok := tg.Registers(42); !ok || len(regs) != 27 || regs[21] != 0x7000 {
		t.Errorf("registers %x %v", regs, ok)
	}
	if _, ok := tg.Registers(43); ok {
		t.Error("registers of a thread that is not in the core")
	}
	if tid, ok := target.TaskOf(tg.Machine(), th)(0x7000); !ok || tid != 42 {
		t.Errorf("TaskOf(0x7000) = %d, %v", tid, ok)
	}
	maps, err := tg.Mappings()
	if err != nil || len(maps) != 2 || maps[0].Path != backing || maps[0].Start != 0x20000 || maps[0].Offset != 0x1000 || maps[1].Start != 0x40000 {
		t.Fatalf("mappings %+v, %v", maps, err)
	}
	f, err := tg.OpenFile(backing)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(io.Closer); ok {
		t.Error("the core's file is given as an io.Closer: the caller would close the core's own")
	}
	got := make([]byte, 4)
	if _, err := f.ReadAt(got, 0x1000); err != nil || string(got) != "from" {
		t.Errorf("file read %q, %v", got, err)
	}
	if _, err := tg.OpenFile(backing + ".missing"); err == nil {
		t.Error("opened a file the core does not map")
	}
	if err := memory.Read(tg.Memory(), 0x10000, got); err != nil || string(got) != "hell" {
		t.Errorf("memory %q, %v", got, err)
	}
}
