package elfsym

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"runtime"
	"testing"
)

// FuzzOpen: an ELF file comes from the target's root, which a hostile
// container controls: whatever its bytes, opening it and asking it for
// what pyglass asks (symbols by name and by address, sections, the build
// id, the debug link, the MiniDebugInfo, the load bias) returns an answer
// or an error, never a panic or an unbounded allocation. The seeds are a
// real dynamic executable of this machine and a few broken headers.
func FuzzOpen(f *testing.F) {
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		if b, err := os.ReadFile(p); err == nil && len(b) < 1<<20 {
			f.Add(b)
			// The same with its section headers cut off.
			f.Add(b[:len(b)/2])
			break
		}
	}
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Add([]byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x3e\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Open(bytes.NewReader(b))
		if err != nil {
			return
		}
		e.Lookup("_PyRuntime")
		e.LookupDynamic("Py_Version")
		e.Defines("PyRun_SimpleString", "PyGILState_Ensure")
		e.NumSymbols()
		if e.HasSymtab() {
			e.LoadSymtab()
			e.Lookup("main")
		}
		for _, r := range e.SegmentRanges(elf.PF_X) {
			e.FuncAt(r.Start)
			e.FuncAt(r.Start + r.Size()/2)
		}
		e.FuncAt(e.Entry)
		e.BuildID()
		e.DebugLink()
		e.Section(".text")
		e.SectionData(".gnu_debuglink", 4096)
		var p [64]byte
		e.ReadVirtual(p[:], e.Entry)
		if d, err := e.MiniDebugInfo(); err == nil {
			d.Lookup("main")
			d.FuncAt(e.Entry)
		}
		e.Bias([]Mapping{{Start: 0x400000, End: 0x401000, Read: true}, {Start: 0x401000, End: 0x402000, Offset: 0x1000, Read: true, Exec: true}})
		CRC32(bytes.NewReader(b))
		BuildID(bytes.NewReader(b))
	})
}

// TestClaimsPastTheFile: a section header may claim any size; a file
// whose string table claims 200 MiB in a file of a few KiB is refused
// without taking the memory it claims.
func TestClaimsPastTheFile(t *testing.T) {
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skipf("no /bin/true to patch: %v", err)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	idx := -1
	for i, s := range f.Sections {
		if s.Name == ".dynstr" {
			idx = i
		}
	}
	if idx < 0 {
		t.Skip("/bin/true has no .dynstr")
	}
	// Elf64_Ehdr: e_shoff at 40, e_shentsize at 58; Elf64_Shdr:
	// sh_size at 32.
	shoff := binary.LittleEndian.Uint64(b[40:])
	shentsize := binary.LittleEndian.Uint16(b[58:])
	binary.LittleEndian.PutUint64(b[int(shoff)+idx*int(shentsize)+32:], 200<<20)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	e, err := Open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.LookupDynamic("exit"); ok {
		t.Error("found a symbol in a table whose strings lie past the file")
	}
	if _, err := e.SectionData(".dynstr", 1<<30); err == nil {
		t.Error("read a section past the end of the file")
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
		t.Errorf("opening a %d KiB file whose .dynstr claims 200 MiB took %d MiB", len(b)>>10, d>>20)
	}
}
