package core

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"

	"github.com/pyglass/pyglass/memory"
)

// synth builds a small x86-64 core: one thread (tid 42, fs_base 0x7000,
// in syscall 202), a dumped segment at 0x10000 holding "hello", and a
// segment at 0x20000 not dumped, backed by file at offset 0x1000, and the
// same file at 0x40000 with no segment at all (gcore leaves read-only file
// mappings out).
func synth(file string) []byte {
	le := binary.LittleEndian
	var notes bytes.Buffer
	note := func(typ uint32, desc []byte) {
		binary.Write(&notes, le, [3]uint32{5, uint32(len(desc)), typ})
		notes.WriteString("CORE\x00\x00\x00\x00")
		notes.Write(desc)
		for notes.Len()%4 != 0 {
			notes.WriteByte(0)
		}
	}
	pr := make([]byte, 112+216+8)
	le.PutUint32(pr[32:], 42)
	le.PutUint64(pr[112+15*8:], 202)    // orig_rax
	le.PutUint64(pr[112+14*8:], 0x1234) // rdi
	le.PutUint64(pr[112+21*8:], 0x7000) // fs_base
	note(ntPrstatus, pr)
	si := make([]byte, 128)
	le.PutUint32(si, 11)
	le.PutUint32(si[8:], 1)
	le.PutUint64(si[16:], 0x10)
	note(ntSiginfo, si)
	var nf bytes.Buffer
	binary.Write(&nf, le, [8]uint64{2, 4096, 0x20000, 0x21000, 1, 0x40000, 0x41000, 1})
	nf.WriteString(file + "\x00" + file + "\x00")
	note(ntFile, nf.Bytes())

	const phoff, nph = 64, 3
	noteOff := uint64(phoff + 56*nph)
	dataOff := noteOff + uint64(notes.Len())
	var b bytes.Buffer
	eh := elf.Header64{Type: uint16(elf.ET_CORE), Machine: uint16(elf.EM_X86_64), Version: 1, Phoff: phoff, Ehsize: 64, Phentsize: 56, Phnum: nph}
	copy(eh.Ident[:], elf.ELFMAG)
	eh.Ident[elf.EI_CLASS], eh.Ident[elf.EI_DATA], eh.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	binary.Write(&b, le, eh)
	binary.Write(&b, le, elf.Prog64{Type: uint32(elf.PT_NOTE), Off: noteOff, Filesz: uint64(notes.Len())})
	binary.Write(&b, le, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_W), Off: dataOff, Vaddr: 0x10000, Filesz: 5, Memsz: 0x1000})
	binary.Write(&b, le, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R), Off: dataOff + 5, Vaddr: 0x20000, Filesz: 0, Memsz: 0x1000})
	b.Write(notes.Bytes())
	b.WriteString("hello")
	return b.Bytes()
}

func writeTemp(t testing.TB, name string, data []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSynthetic: notes, dumped memory, memory read from the mapped file,
// and a fault outside both.
func TestSynthetic(t *testing.T) {
	backing := writeTemp(t, "lib.so", append(make([]byte, 0x1000), []byte("from the file")...))
	c, err := Open(writeTemp(t, "core", synth(backing)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Threads) != 1 || c.PID != 42 {
		t.Fatalf("threads %+v pid %d", c.Threads, c.PID)
	}
	// The raw registers are kept (fs_base is word 21, orig_rax 15).
	th := c.Threads[0]
	regs := th.Regs
	th.Regs = nil
	if !reflect.DeepEqual(th, Thread{TID: 42, TP: 0x7000, Syscall: 202, Args: [6]uint64{0x1234}, PC: 0, SP: 0}) || len(regs) != 27 || regs[21] != 0x7000 || regs[15] != 202 {
		t.Errorf("thread %+v, registers %x", th, regs)
	}
	if si := c.Siginfo; si == nil || si.Signo != 11 || si.Code != 1 || si.Addr != 0x10 {
		t.Errorf("siginfo %+v", c.Siginfo)
	}
	got := make([]byte, 5)
	if err := memory.Read(c, 0x10000, got); err != nil || string(got) != "hello" {
		t.Errorf("dumped memory %q, %v", got, err)
	}
	got = make([]byte, 13)
	if err := memory.Read(c, 0x20000, got); err != nil || string(got) != "from the file" {
		t.Errorf("file-backed memory %q, %v", got, err)
	}
	if err := memory.Read(c, 0x40000, got); err != nil || string(got) != "from the file" {
		t.Errorf("memory of a file mapping with no segment %q, %v", got, err)
	}
	// Past the dumped bytes, not file-backed: unknown, never made up as
	// zeros; and outside every segment.
	for _, a := range []uint64{0x10010, 0x30000} {
		if _, err := memory.U8(c, a); !errors.Is(err, memory.ErrFault) {
			t.Errorf("read at %#x: %v, want ErrFault", a, err)
		}
	}
}

// FuzzOpen: any bytes as a core, and reads anywhere in it, fail with an
// error, never a panic or an unbounded allocation.
func FuzzOpen(f *testing.F) {
	f.Add(synth("/nonexistent"), uint64(0x10000))
	f.Add(synth("/nonexistent")[:300], uint64(0x20000))
	f.Fuzz(func(t *testing.T, data []byte, addr uint64) {
		p := writeTemp(t, "core", data)
		c, err := Open(p, Options{})
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		c.ReadAt(buf, addr)
		c.ReadAt(buf, 0x10000)
		c.CheckFiles()
		for _, f := range c.Files {
			c.BuildID(f.Path)
		}
		c.ExePath()
	})
}

// compress returns data compressed in format (gz, xz, zst, lz4).
func compress(t testing.TB, format string, data []byte) []byte {
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch format {
	case "gz":
		w = gzip.NewWriter(&b)
	case "xz":
		w, err = xz.NewWriter(&b)
	case "zst":
		w, err = zstd.NewWriter(&b)
	case "lz4":
		w = lz4.NewWriter(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCompressed: a core compressed with gzip, xz, zstd or lz4 reads as
// the plain one; a cut-short compressed core is an error, and leaves no
// temporary file.
func TestCompressed(t *testing.T) {
	plain := synth("/nonexistent")
	tmpBefore, _ := filepath.Glob(filepath.Join(os.TempDir(), "pyglass-core-*"))
	for _, format := range []string{"gz", "xz", "zst", "lz4"} {
		z := compress(t, format, plain)
		c, err := Open(writeTemp(t, "core."+format, z), Options{})
		if err != nil {
			t.Errorf("%s: %v", format, err)
			continue
		}
		got := make([]byte, 5)
		if err := memory.Read(c, 0x10000, got); err != nil || string(got) != "hello" || c.PID != 42 {
			t.Errorf("%s: %q, %v, pid %d", format, got, err, c.PID)
		}
		c.Close()
		if _, err := Open(writeTemp(t, "cut."+format, z[:len(z)/2]), Options{}); err == nil {
			t.Errorf("%s: a core cut in half opened", format)
		}
	}
	tmpAfter, _ := filepath.Glob(filepath.Join(os.TempDir(), "pyglass-core-*"))
	if len(tmpAfter) > len(tmpBefore) {
		t.Errorf("temporary files left: %v", tmpAfter)
	}
}

// TestFIFORefused: a core naming a FIFO as a mapped file (a hostile core)
// does not make pyglass block opening it: it is refused with a warning.
func TestFIFORefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("cannot make a FIFO: %v", err)
	}
	var warnings []string
	c, err := Open(writeTemp(t, "core", synth(fifo)), Options{Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		c.CheckFiles()
		_, err := memory.U8(c, 0x20000)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, memory.ErrFault) || len(warnings) != 1 || !strings.Contains(warnings[0], "not a regular file") {
			t.Errorf("read %v, warnings %q", err, warnings)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("opening a FIFO named by the core blocked")
	}
}

// TestFromLibPath: a mapped file is looked for in the --lib-path
// directories by its base name, without the " (deleted)" the kernel
// adds to a file removed since it was mapped, in the order given; a
// name that is no file's ("/", "..", ".") is not looked for. With no
// build-id recorded (this core has none), the file found is used with a
// warning.
func TestFromLibPath(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(b, "libfoo.so.1"), filepath.Join(a, "libbar.so")} {
		if err := os.WriteFile(f, []byte("not ELF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &Core{opts: Options{LibPath: []string{a, "", b}}, libFound: map[string]string{}, exePath: "/usr/bin/python3"}
	for path, want := range map[string]string{
		"/usr/lib/libfoo.so.1 (deleted)": filepath.Join(b, "libfoo.so.1"),
		"/opt/x/libfoo.so.1":             filepath.Join(b, "libfoo.so.1"),
		"/usr/lib/libbar.so":             filepath.Join(a, "libbar.so"),
		"/usr/lib/libnone.so":            "",
		"/":                              "",
		"/usr/lib/..":                    "",
		"":                               "",
		"/usr/bin/python3":               "", // the program: --exe's
	} {
		c.Warnings = nil
		f := c.fromLibPath(path)
		got := ""
		if f != nil {
			got = f.Name()
			f.Close()
		}
		if got != want {
			t.Errorf("%q: opened %q, want %q", path, got, want)
		}
		if want != "" && (c.Resolve(path) != want || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "unchecked")) {
			t.Errorf("%q: resolved to %q, warnings %q: want %q, one warning that it is unchecked", path, c.Resolve(path), c.Warnings, want)
		}
	}
}
