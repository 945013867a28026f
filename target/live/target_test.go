package live

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/memory"
	"github.com/pyglass/pyglass/target"
)

// TestSnapshot: a real process (sleep) as a target.Target, from /proc
// without pausing, then held by a freeze: its thread, blocked in a
// system call both ways, its thread pointer and registers while held,
// its mappings, the program's file opened as it maps it, its auxv.
func TestSnapshot(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	// Wait until it sleeps (it execs, then blocks in its system call).
	for deadline := time.Now().Add(10 * time.Second); ; {
		sc, err := procfs.New(pid).TaskSyscall(pid)
		if exe, _ := procfs.New(pid).Exe(); err == nil && sc.InSyscall && exe != "" && exe != mustExe(t) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sleep never blocked in a system call")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mem, err := Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	s, err := NewSnapshot(pid, mem, false, true)
	if err != nil {
		t.Fatal(err)
	}
	th := s.Threads()
	if len(th) != 1 || th[0].TID != pid || th[0].NSTID != pid || th[0].Name != "sleep" {
		t.Fatalf("threads %+v", th)
	}
	if st := th[0].State; st.Kind != target.InSyscall || st.Frozen || st.Syscall <= 0 {
		t.Errorf("state from /proc %+v, want blocked in a system call, not frozen", st)
	}
	if _, ok := s.Registers(pid); ok {
		t.Error("registers of a thread that is not held")
	}
	f, err := ptrace.Freeze(pid)
	if err != nil {
		t.Skip("cannot trace:", err)
	}
	s.Hold(f)
	th = s.Threads()
	if len(th) != 1 || th[0].Name != "sleep" || th[0].TP == 0 {
		t.Errorf("held threads %+v", th)
	}
	if st := th[0].State; st.Kind != target.InSyscall || !st.Frozen || st.Syscall <= 0 {
		t.Errorf("held state %+v, want blocked in a system call, frozen", st)
	}
	regs, ok := s.Registers(pid)
	f.Thaw()
	if !ok || len(regs) < 27 {
		t.Errorf("registers %x, %v", regs, ok)
	}
	maps, err := s.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := procfs.New(pid).Exe()
	if _, ok := target.LoadBase(maps, exe); !ok {
		t.Fatalf("no mapping of %s at offset 0 in %+v", exe, maps)
	}
	ra, err := s.OpenFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.(io.Closer).Close()
	if _, err := elf.NewFile(ra); err != nil {
		t.Errorf("the program as mapped: %v", err)
	}
	if _, err := s.OpenFile("/not/mapped"); err == nil {
		t.Error("opened a file that is not mapped")
	}
	aux := s.Auxv()
	const atEntry = 9
	if aux[atEntry] == 0 {
		t.Errorf("auxv %v has no AT_ENTRY", aux)
	}
	// The entry point is in the program's code: readable.
	if _, err := memory.U8(s.Memory(), aux[atEntry]); err != nil {
		t.Errorf("reading the entry point: %v", err)
	}
	// The vDSO's build-id, read from the target's memory, is that of
	// this test's own vDSO (the same kernel's), read through
	// /proc/self/mem and debug/elf.
	if want := ownVDSOBuildID(t); want != "" {
		got := ""
		for _, m := range maps {
			if m.Path == vdsoPath {
				got = m.BuildID
			}
		}
		if got != want {
			t.Errorf("vDSO build-id %q, this process's is %q", got, want)
		}
	}
}

// ownVDSOBuildID is the build-id of this process's vDSO ("" when it has
// none), read through /proc/self/mem and debug/elf.
func ownVDSOBuildID(t *testing.T) string {
	maps, err := procfs.New(os.Getpid()).Maps()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Path != vdsoPath {
			continue
		}
		f, err := os.Open("/proc/self/mem")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, m.End-m.Start)
		if _, err := f.ReadAt(b, int64(m.Start)); err != nil {
			t.Fatal(err)
		}
		e, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return noteBuildID(t, e)
	}
	return ""
}

func mustExe(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestSnapshotBuildIDs: a real Python process's mappings carry each
// file's GNU build-id, read from the file as the target maps it; every
// one is what debug/elf reads from the file's note sections
// (the interpreter's and the C library's at least are known), and the
// vDSO, which has no file, has none.
func TestSnapshotBuildIDs(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := pyproctest.Start(t, in.Command("-c", pyproctest.Fixture))
		s := SnapshotOf(tg.PID(), nil, nil)
		maps, err := s.Mappings()
		if err != nil {
			t.Fatal(err)
		}
		known := 0
		seen := map[string]bool{}
		for _, m := range maps {
			if seen[m.Path] {
				continue
			}
			seen[m.Path] = true
			if m.Path == vdsoPath {
				if m.BuildID != "" {
					t.Errorf("vDSO build-id %q", m.BuildID)
				}
				continue
			}
			want := elfBuildID(t, m.Path)
			if m.BuildID != want {
				t.Errorf("%s: build-id %q, debug/elf reads %q", m.Path, m.BuildID, want)
			}
			base := filepath.Base(m.TargetPath)
			if m.BuildID != "" && (strings.HasPrefix(base, "libc.so") || strings.HasPrefix(base, "libc-") || strings.Contains(base, "python")) {
				known++
			}
		}
		if known < 2 {
			t.Errorf("%d of the interpreter's and the C library's files have a build-id: %+v", known, maps)
		}
	})
}

// elfBuildID is the build-id of the ELF file at path as debug/elf reads
// it from its note sections ("" when it has none).
func elfBuildID(t *testing.T, path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return "" // not ELF (a locale archive...)
	}
	defer f.Close()
	return noteBuildID(t, f)
}

// noteBuildID is the build-id in e's note sections (.note.gnu.build-id;
// the vDSO's is in .note), "" when it has none.
func noteBuildID(t *testing.T, e *elf.File) string {
	le := binary.LittleEndian
	for _, sec := range e.Sections {
		if sec.Type != elf.SHT_NOTE {
			continue
		}
		b, err := sec.Data()
		if err != nil {
			t.Fatalf("%s: %v", sec.Name, err)
		}
		for len(b) >= 12 {
			namesz, descsz, typ := le.Uint32(b), le.Uint32(b[4:]), le.Uint32(b[8:])
			name, desc := 12+(namesz+3)&^3, 12+(namesz+3)&^3+(descsz+3)&^3
			if int(desc) > len(b) {
				break
			}
			if typ == 3 && string(b[12:12+namesz]) == "GNU\x00" {
				return hex.EncodeToString(b[name : name+descsz])
			}
			b = b[desc:]
		}
	}
	return ""
}
