package elfsym

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
)

func open(t *testing.T, path string) *File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("opening %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	e, err := Open(f)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	return e
}

func libpython(t *testing.T, minor string) string {
	t.Helper()
	in := pyproctest.Pyenv(t, minor)
	libs, _ := filepath.Glob(filepath.Join(in.Home, "lib", "libpython*.so.1.0"))
	if len(libs) != 1 {
		t.Skipf("no libpython in %s", in.Home)
	}
	return libs[0]
}

func TestSystemPython(t *testing.T) {
	in := pyproctest.System(t)
	e := open(t, in.Path)
	if e.Type != elf.ET_EXEC {
		t.Skipf("%s is not ET_EXEC", in.Path)
	}
	if !e.Defines("Py_Initialize", "PyRun_SimpleString") {
		t.Errorf("%s does not define the Py* API in .dynsym", in.Path)
	}
	if err := e.LoadSymtab(); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Section(".PyRuntime"); !ok {
		t.Error("no .PyRuntime section")
	}
	b, err := e.Bias([]Mapping{{Start: 0x400000, End: 0x401000, Read: true}})
	if err != nil || b != 0 {
		t.Errorf("ET_EXEC bias %#x, %v", b, err)
	}
}

func TestLibpythonSymbols(t *testing.T) {
	e := open(t, libpython(t, "3.12"))
	if e.Type != elf.ET_DYN || !strings.HasPrefix(e.Soname, "libpython3.12") {
		t.Errorf("type %v soname %q", e.Type, e.Soname)
	}
	s, ok := e.Lookup("PyRun_SimpleString")
	if !ok || s.Type != elf.STT_FUNC || s.Value == 0 {
		t.Fatalf("PyRun_SimpleString: %+v %v", s, ok)
	}
	text := false
	for _, r := range e.SegmentRanges(elf.PF_X) {
		text = text || r.Contains(s.Value)
	}
	if !text {
		t.Errorf("PyRun_SimpleString %#x not in an executable segment", s.Value)
	}
	v, ok := e.Lookup("Py_Version")
	if !ok {
		t.Fatal("no Py_Version")
	}
	var b [4]byte
	if err := e.ReadVirtual(b[:], v.Value); err != nil || b[3] != 3 || b[2] != 12 {
		t.Errorf("Py_Version bytes %x, %v", b, err)
	}
	if r, ok := e.Section(".rodata"); !ok || !r.Contains(v.Value) {
		t.Errorf(".rodata %v does not hold Py_Version %#x", r, v.Value)
	}
	if err := e.ReadVirtual(b[:], 1<<60); !errors.Is(err, ErrNoSegment) {
		t.Errorf("reading outside the image: %v", err)
	}
}

func TestProgramImportsAreUndefined(t *testing.T) {
	in := pyproctest.Pyenv(t, "3.12")
	e := open(t, in.Path)
	if e.Defines("Py_Initialize", "PyRun_SimpleString", "_PyRuntime") {
		t.Errorf("%s links libpython but Defines reports its imports", in.Path)
	}
}

// loaderMappings returns the mappings the dynamic loader makes for e at bias.
func loaderMappings(e *File, bias uint64) []Mapping {
	var ms []Mapping
	for _, s := range e.Loads {
		start := (s.Vaddr + bias) &^ (pageSize - 1)
		end := (s.Vaddr + bias + s.Memsz + pageSize - 1) &^ (pageSize - 1)
		ms = append(ms, Mapping{Start: start, End: end, Offset: s.Off &^ (pageSize - 1),
			Read: s.Flags&elf.PF_R != 0, Write: s.Flags&elf.PF_W != 0, Exec: s.Flags&elf.PF_X != 0})
	}
	return ms
}

func TestBiasIgnoresStrayMapping(t *testing.T) {
	e := open(t, libpython(t, "3.12"))
	const bias = 0x7f1234560000
	ms := loaderMappings(e, bias)
	for _, m := range ms {
		got, err := e.BiasOf(m)
		if err != nil || got != bias {
			t.Errorf("BiasOf(%+v) = %#x, %v", m, got, err)
		}
	}
	// A page of the text segment mapped again elsewhere, first in the
	// list, as libffi's trampolines do (py-spy #865).
	var text Segment
	for _, s := range e.Loads {
		if s.Flags&elf.PF_X != 0 {
			text = s
		}
	}
	stray := Mapping{Start: 0x7fee00000000, End: 0x7fee00001000, Offset: (text.Off + 0x3000) &^ (pageSize - 1), Read: true, Exec: true}
	if b, _ := e.BiasOf(stray); b == bias {
		t.Fatal("the stray mapping does not mislead BiasOf: the test proves nothing")
	}
	got, err := e.Bias(append([]Mapping{stray}, ms...))
	if err != nil || got != bias {
		t.Errorf("Bias = %#x, %v; want %#x", got, err, uint64(bias))
	}
	// Only the stray mapping and the data: the data segment still wins.
	if len(ms) > 1 {
		got, err = e.Bias([]Mapping{stray, ms[len(ms)-1]})
		if err != nil || got != bias {
			t.Errorf("with two mappings: Bias = %#x, %v; want %#x", got, err, uint64(bias))
		}
	}
	if _, err := e.Bias([]Mapping{{Start: 0x1000, End: 0x2000, Offset: 1 << 40, Read: true}}); !errors.Is(err, ErrNoSegment) {
		t.Errorf("unrelated mapping: %v", err)
	}
}

func TestNotELF(t *testing.T) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if _, err := Open(f); !errors.Is(err, ErrNotELF) {
		t.Errorf("Open(/etc/passwd): %v", err)
	}
}
