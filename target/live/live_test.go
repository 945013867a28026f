package live

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestReadBytesObject reads a bytes object's content from every
// interpreter testenv finds, by the address the target reports, through
// both process_vm_readv and /proc/PID/mem.
func TestReadBytesObject(t *testing.T) {
	testenv.ForEachParallel(t, func(t *testing.T, in testenv.Interp) {
		tg := pyproctest.Start(t, in.Command("-c", pyproctest.Fixture))
		want := []byte(tg.Info.Data)
		for _, viaMem := range []bool{false, true} {
			p := openVia(t, tg.PID(), viaMem)
			got := make([]byte, len(want)+1)
			if err := memory.Read(p, tg.Info.DataAddr, got); err != nil {
				t.Fatalf("reading (via mem %v): %v", viaMem, err)
			}
			if !bytes.Equal(got, append(want, 0)) {
				t.Errorf("read %q (via mem %v), want %q", got, viaMem, want)
			}
			// ob_sval follows the object header: id + offset.
			off := tg.Info.DataAddr - tg.Info.DataID
			if off == 0 || off > 64 {
				t.Errorf("bytes data at id+%d", off)
			}
			size, err := memory.U64(p, tg.Info.DataID+16) // ob_size
			if err != nil || size != uint64(len(want)) {
				t.Errorf("ob_size %d (%v), want %d", size, err, len(want))
			}
			p.Close()
		}
	})
}

// openVia opens pid's memory, through /proc/PID/mem when viaMem.
func openVia(t *testing.T, pid int, viaMem bool) *Process {
	t.Helper()
	p, err := Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	if viaMem {
		if err := p.openMem(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestFaultsAndShortReads(t *testing.T) {
	in := pyproctest.System(t)
	tg := pyproctest.StartInterp(t, in)
	for _, viaMem := range []bool{false, true} {
		p := openVia(t, tg.PID(), viaMem)
		var b [16]byte
		if n, err := p.ReadAt(b[:], 0); n != 0 || !errors.Is(err, memory.ErrFault) {
			t.Errorf("reading address 0 (via mem %v): %d, %v; want ErrFault", viaMem, n, err)
		}
		// The end of a mapping followed by a hole.
		ms, err := procfs.New(tg.PID()).Maps()
		if err != nil {
			t.Fatal(err)
		}
		end := uint64(0)
		for i := 0; i+1 < len(ms); i++ {
			if ms[i].Perms.Read && ms[i].End < ms[i+1].Start && ms[i].Path != "[vvar]" {
				end = ms[i].End
				break
			}
		}
		if end == 0 {
			t.Fatal("no mapping followed by a hole")
		}
		n, err := p.ReadAt(b[:], end-8)
		if n != 8 || !errors.Is(err, memory.ErrShortRead) {
			t.Errorf("reading across %#x (via mem %v): %d, %v; want 8, ErrShortRead", end, viaMem, n, err)
		}
		p.Close()
	}
}

// sleeper starts a sleep child and opens its memory; it returns the
// child, the reader and the child's mappings (all gone with the test).
func sleeper(t *testing.T) (*exec.Cmd, *Process, []procfs.Mapping) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command")
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p, err := Open(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ms, err := procfs.New(cmd.Process.Pid).Maps()
	if err != nil {
		t.Fatal(err)
	}
	return cmd, p, ms
}

func TestProcessGone(t *testing.T) {
	if _, err := Open(1<<22 + 17); !errors.Is(err, procfs.ErrNoProcess) {
		t.Errorf("Open of a missing PID: %v; want procfs.ErrNoProcess", err)
	}
	cmd, p, ms := sleeper(t)
	var b [8]byte
	if err := memory.Read(p, ms[0].Start, b[:]); err != nil {
		t.Fatalf("reading a live process: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := p.ReadAt(b[:], ms[0].Start); !errors.Is(err, procfs.ErrNoProcess) {
		t.Errorf("reading a dead process: %v; want procfs.ErrNoProcess", err)
	}
}

// TestWrites: WriteAt stores into a writable page of a live process (read
// back, then restored) and is refused a code page (ErrFault);
// WriteForced writes a code page (the bytes already there, so the
// process is unchanged); both say when the process is gone.
func TestWrites(t *testing.T) {
	cmd, p, ms := sleeper(t)
	var data, code uint64
	for _, m := range ms {
		switch {
		case m.Path == "[stack]":
			data = m.Start
		case code == 0 && m.Perms.Exec && !m.Perms.Write && strings.HasPrefix(m.Path, "/"):
			code = m.Start
		}
	}
	if data == 0 || code == 0 {
		t.Fatalf("no stack or code mapping in %v", ms)
	}
	var old, got [8]byte
	if err := memory.Read(p, data, old[:]); err != nil {
		t.Fatal(err)
	}
	want := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	if n, err := p.WriteAt(want[:], data); n != 8 || err != nil {
		t.Fatalf("WriteAt into the stack: %d, %v", n, err)
	}
	if err := memory.Read(p, data, got[:]); err != nil || got != want {
		t.Errorf("read back %v, %v; want %v", got, err, want)
	}
	if _, err := p.WriteAt(old[:], data); err != nil {
		t.Fatalf("restoring: %v", err)
	}
	var text [8]byte
	if err := memory.Read(p, code, text[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteAt(text[:], code); !errors.Is(err, memory.ErrFault) {
		t.Errorf("WriteAt into code: %v, want ErrFault (process_vm_writev cannot write it)", err)
	}
	if err := p.WriteForced(text[:], code); err != nil {
		t.Errorf("WriteForced into code: %v", err)
	}
	if _, err := p.WriteAt(want[:], 8); !errors.Is(err, memory.ErrFault) {
		t.Errorf("WriteAt at 8: %v, want ErrFault", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := p.WriteAt(want[:], data); !errors.Is(err, procfs.ErrNoProcess) {
		t.Errorf("WriteAt into a dead process: %v, want procfs.ErrNoProcess", err)
	}
}

func BenchmarkReadAt(b *testing.B) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		b.Skip("no sleep command")
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(50 * time.Millisecond)
	ms, err := procfs.New(cmd.Process.Pid).Maps()
	if err != nil {
		b.Fatal(err)
	}
	p, err := Open(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	var buf [64]byte
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ReadAt(buf[:], ms[0].Start); err != nil {
			b.Fatal(err)
		}
	}
}
