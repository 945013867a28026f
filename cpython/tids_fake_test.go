package cpython

import (
	"debug/elf"
	"testing"

	"github.com/pyglass/pyglass/memory"
)

// TestResolveTIDs: every thread's NativeID ends up one of the process's
// tasks or 0. The kernel's answer (TaskOf) comes first; a native_thread_id
// that is no task (a raw fork's child keeps its parent's) is replaced by
// the tid in glibc's struct pthread when that is a task; a thread with
// neither (a thread state of no task: the parent's other threads after a
// raw fork, or one that exited, tid cleared) gets 0.
func TestResolveTIDs(t *testing.T) {
	off := glibcTIDOffset(elf.EM_X86_64)
	m := &memory.Fake{}
	pthread := func(addr uint64, tid uint32) uint64 {
		b := make([]byte, pthreadScan)
		memory.Order.PutUint32(b[off:], tid)
		m.Map(addr, b)
		return addr
	}
	stale := pthread(0x10000, 100)  // forked child's main thread: struct pthread says 100
	valid := pthread(0x20000, 101)  // a thread whose native id is right
	ghost := pthread(0x30000, 555)  // the parent's thread: its tid is no task here
	exited := pthread(0x40000, 0)   // exited: glibc cleared tid
	kernel := pthread(0x50000, 103) // memory says 103, the kernel says 104
	threads := []Thread{
		{ThreadID: stale, NativeID: 999},
		{ThreadID: valid, NativeID: 101},
		{ThreadID: ghost, NativeID: 555},
		{ThreadID: exited, NativeID: 0},
		{ThreadID: kernel, NativeID: 103},
	}
	taskOf := func(id uint64) (int, bool) {
		if id == kernel {
			return 104, true
		}
		return 0, false
	}
	resolveTIDs(m, threads, ThreadOptions{TIDs: []int{100, 101, 102, 103, 104}, TaskOf: taskOf, Machine: elf.EM_X86_64})
	for i, want := range []int{100, 101, 0, 0, 104} {
		if got := threads[i].NativeID; got != want {
			t.Errorf("thread %d (pthread %#x): native id %d, want %d", i, threads[i].ThreadID, got, want)
		}
	}
}
