package cpython_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pyglass/pyglass/cpython"
	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// asyncioDebug314 is the .AsyncioDebug section of Debian's 3.14.10
// _asyncio module (python3.15's differs in the state offsets only).
var asyncioDebug314 = []uint64{168, 136, 96, 108, 109, 128, 152, 225864, 10880, 936, 864, 872, 880}

func debugBytes(v []uint64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], x)
	}
	return b
}

func TestParseAsyncioDebug(t *testing.T) {
	d, err := cpython.ParseAsyncioDebug(debugBytes(asyncioDebug314))
	if err != nil {
		t.Fatal(err)
	}
	if d.TaskCoro != 128 || d.TaskNode != 152 || d.ThreadTasksHead != 880 || d.InterpTasksHead != 10880 {
		t.Fatalf("decoded %+v", d)
	}
	bad := map[string]func(v []uint64){
		"task_node past the task":        func(v []uint64) { v[6] = 160 },
		"task size of 1 GiB":             func(v []uint64) { v[0] = 1 << 30 },
		"awaited_by inside future head":  func(v []uint64) { v[2] = 8 },
		"thread tasks head past tstate":  func(v []uint64) { v[12] = 936 },
		"interpreter size 0":             func(v []uint64) { v[7] = 0 },
		"misaligned coroutine pointer":   func(v []uint64) { v[5] = 129 },
		"running task at the very end":   func(v []uint64) { v[11] = 1 << 62 },
		"interp head overflowing uint64": func(v []uint64) { v[8] = ^uint64(0) &^ 7 },
	}
	for name, mutate := range bad {
		v := append([]uint64(nil), asyncioDebug314...)
		mutate(v)
		if _, err := cpython.ParseAsyncioDebug(debugBytes(v)); !errors.Is(err, layout.ErrBadLayout) {
			t.Errorf("%s: got %v, want ErrBadLayout", name, err)
		}
	}
	if _, err := cpython.ParseAsyncioDebug(debugBytes(asyncioDebug314)[:96]); err == nil {
		t.Error("a short section was accepted")
	}
}

func TestAsyncCycles(t *testing.T) {
	task := func(a uint64, awaits ...uint64) cpython.AsyncTask {
		return cpython.AsyncTask{Addr: a, Awaits: cpython.Awaited{Tasks: awaits}}
	}
	tasks := []cpython.AsyncTask{
		task(1, 2), task(2, 3), task(3, 1), // a cycle of three
		task(4, 5, 6), task(5), task(6, 5), // a DAG
		task(7, 7),     // awaits itself
		task(8, 9, 42), // awaits a task not listed
		task(9, 8),
	}
	got := cpython.AsyncCycles(tasks)
	want := [][]uint64{{1, 2, 3}, {7}, {8, 9}}
	if len(got) != len(want) {
		t.Fatalf("cycles %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("cycles %v, want %v", got, want)
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("cycles %v, want %v", got, want)
			}
		}
	}
}

// FuzzAsyncTasks reads tasks from random memory, with the table of each
// version from 3.7 and, on 3.14+, a random .AsyncioDebug section that
// passed ParseAsyncioDebug: nothing may panic or loop.
func FuzzAsyncTasks(f *testing.F) {
	for minor := 7; minor <= 15; minor++ {
		p := newFakeProc(f, 3, minor)
		f.Add(uint8(minor), debugBytes(asyncioDebug314), p.buf[:min(p.used, maxFuzzData)], uint32(p.interp-fakeBase), uint32(p.threads[0]-fakeBase))
	}
	f.Fuzz(func(t *testing.T, minor uint8, section, mem []byte, interpOff, threadOff uint32) {
		if len(mem) > maxFuzzData {
			mem = mem[:maxFuzzData]
		}
		l, err := layout.For(3, 7+int(minor)%9)
		if err != nil {
			t.Skip()
		}
		var r memory.Fake
		r.Map(fakeBase, mem)
		opt := cpython.AsyncOptions{Threads: []uint64{fakeBase + uint64(threadOff)%uint64(len(mem)+1)}}
		if l.Minor >= 14 {
			if opt.Debug, err = cpython.ParseAsyncioDebug(section); err != nil {
				opt.Debug = nil
			}
		}
		tasks, _ := cpython.AsyncTasks(&r, l, fakeBase+uint64(interpOff)%uint64(len(mem)+1), opt)
		cpython.AsyncCycles(tasks)
	})
}
