package elfsym

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
)

func TestGNUHash(t *testing.T) {
	// Values of glibc's dl_new_hash.
	for name, want := range map[string]uint32{"": 0x1505, "printf": 0x156b2bb8, "exit": 0x7c967e3f, "syscall": 0xbac212a0} {
		if got := GNUHash(name); got != want {
			t.Errorf("GNUHash(%q) = %#x, want %#x", name, got, want)
		}
	}
}

// reference returns what the former implementation found: for each name
// the first defined symbol of the table, preferring in .dynsym a default
// version over a hidden one.
func reference(syms []elf.Symbol) map[string]elf.Symbol {
	out := map[string]elf.Symbol{}
	for _, s := range syms {
		t := elf.ST_TYPE(s.Info)
		if s.Section == elf.SHN_UNDEF || s.Name == "" || t == elf.STT_SECTION || t == elf.STT_FILE {
			continue
		}
		if old, ok := out[s.Name]; ok && !(old.HasVersion && old.VersionIndex.IsHidden() && !s.VersionIndex.IsHidden()) {
			continue
		}
		out[s.Name] = s
	}
	return out
}

// testFiles returns ELF files with a .gnu.hash: the C library, libpython
// builds, the system python and a non-Python program.
func testFiles(t *testing.T) []string {
	var files []string
	libc, _ := filepath.Glob("/lib/*-linux-gnu/libc.so.6")
	files = append(files, libc...)
	files = append(files, pyproctest.Files()...)
	files = append(files, "/bin/bash")
	var out []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Skip("no ELF file to test with")
	}
	return out
}

func TestLookupDynamicMatchesFullTable(t *testing.T) {
	for _, path := range testFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			e := open(t, path)
			if e.hashTable() == nil {
				t.Skipf("%s has no .gnu.hash", path)
			}
			dyn, err := e.f.DynamicSymbols()
			if err != nil {
				t.Fatal(err)
			}
			want := reference(dyn)
			for name, w := range want {
				s, ok := e.LookupDynamic(name)
				if !ok || s.Value != w.Value || s.Size != w.Size || s.Type != elf.ST_TYPE(w.Info) {
					t.Errorf("LookupDynamic(%q) = %+v, %v; want value %#x size %d", name, s, ok, w.Value, w.Size)
				}
			}
			// Imports (undefined in .dynsym) and absent names are not found.
			for _, s := range dyn {
				if s.Section == elf.SHN_UNDEF && s.Name != "" {
					if _, ok := want[s.Name]; !ok {
						if got, ok := e.LookupDynamic(s.Name); ok {
							t.Errorf("undefined %q found: %+v", s.Name, got)
						}
					}
				}
			}
			for _, name := range []string{"no_such_symbol_pyglass", "Py_", "munma", "munmapx"} {
				if _, ok := want[name]; !ok {
					if s, ok := e.LookupDynamic(name); ok {
						t.Errorf("LookupDynamic(%q) found %+v", name, s)
					}
				}
			}
			if n := e.NumSymbols(); n != len(want) {
				t.Errorf("NumSymbols = %d, want %d", n, len(want))
			}
			// Without the hash table, a scan of .dynsym gives the same
			// answers, whether streamed or from the loaded table.
			for _, loaded := range []bool{false, true} {
				e := open(t, path)
				e.ghErr = os.ErrNotExist
				if loaded {
					e.NumSymbols()
				}
				n := 0
				for name, w := range want {
					if n++; n > 300 && !(w.HasVersion && w.VersionIndex.IsHidden()) {
						continue
					}
					s, ok := e.LookupDynamic(name)
					if !ok || s.Value != w.Value {
						t.Errorf("scan (loaded %v): LookupDynamic(%q) = %+v, %v; want %#x", loaded, name, s, ok, w.Value)
						break
					}
				}
				if s, ok := e.LookupDynamic("no_such_symbol_pyglass"); ok {
					t.Errorf("scan (loaded %v): absent name found: %+v", loaded, s)
				}
			}
		})
	}
}

func TestLazySymtab(t *testing.T) {
	e := open(t, libpython(t, "3.12"))
	if !e.HasSymtab() {
		t.Skip("libpython3.12 has no .symtab")
	}
	all, err := e.f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	symtab := reference(all)
	dyn, _ := e.f.DynamicSymbols()
	dynamic := reference(dyn)
	// A static symbol: in .symtab, not .dynsym.
	static := ""
	for _, name := range []string{"interp_head", "_PyRuntime_Initialized", "runtime_initialized"} {
		if _, ok := dynamic[name]; !ok {
			if _, ok := symtab[name]; ok {
				static = name
				break
			}
		}
	}
	if static == "" {
		t.Skip("no known static symbol in .symtab")
	}
	if _, ok := e.Lookup(static); ok {
		t.Errorf("%s found before LoadSymtab", static)
	}
	if err := e.LoadSymtab(); err != nil {
		t.Fatal(err)
	}
	s, ok := e.Lookup(static)
	if w := symtab[static]; !ok || s.Value != w.Value {
		t.Errorf("Lookup(%q) = %+v, %v; want %#x", static, s, ok, w.Value)
	}
	// Every name resolves as the full tables say: .dynsym first.
	n := 0
	for name, w := range symtab {
		if n++; n > 300 {
			break
		}
		if d, ok := dynamic[name]; ok {
			w = d
		}
		s, ok := e.Lookup(name)
		if !ok || s.Value != w.Value {
			t.Errorf("Lookup(%q) = %+v, %v; want %#x", name, s, ok, w.Value)
		}
	}
	if _, ok := e.Lookup("no_such_symbol_pyglass"); ok {
		t.Error("absent name found")
	}
}

func TestParseGNUHashRejectsTruncated(t *testing.T) {
	for _, b := range [][]byte{nil, make([]byte, 15), {1, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 6, 0, 0, 0}} {
		if _, err := parseGNUHash(b); err == nil {
			t.Errorf("parseGNUHash(%x) accepted", b)
		}
	}
}

func TestStreamedFindAcrossChunks(t *testing.T) {
	const name = "target_name"
	// The name at every offset across the first chunk boundary, each time
	// also as the tail of a longer string ("xtarget_name") across the
	// second.
	for d := -len(name) - 1; d <= 1; d++ {
		strs := bytes.Repeat([]byte("\x00filler"), 3*strChunk/7+100)
		off := uint32(strChunk + d)
		copy(strs[off-1:], "\x00"+name+"\x00")
		tail := uint32(2*strChunk + d)
		copy(strs[tail-2:], "\x00x"+name+"\x00")
		want := []uint32{off, tail}
		// Symbols: many pointing at filler, the last ones at each copy.
		nsyms := symChunk/sym64Size*2 + 10
		syms := make([]byte, (nsyms+len(want))*sym64Size)
		for i := 1; i < nsyms; i++ {
			le.PutUint32(syms[i*sym64Size:], 1)
			le.PutUint16(syms[i*sym64Size+6:], 1)
		}
		for j, off := range want {
			b := syms[(nsyms+j)*sym64Size:]
			le.PutUint32(b, off)
			b[4] = byte(elf.STT_OBJECT)
			le.PutUint16(b[6:], 1)
			le.PutUint64(b[8:], uint64(0x1000+j))
		}
		file := append(append([]byte{}, syms...), strs...)
		tab := symTable{
			r:   bytes.NewReader(file),
			sec: &elf.Section{SectionHeader: elf.SectionHeader{Name: ".symtab", Offset: 0, Size: uint64(len(syms))}},
			str: &elf.Section{SectionHeader: elf.SectionHeader{Name: ".strtab", Offset: uint64(len(syms)), Size: uint64(len(strs))}},
		}
		offs, err := tab.nameOffsets(name)
		if err != nil || !slices.Equal(offs, want) {
			t.Errorf("shift %d: nameOffsets = %v, %v; want %v", d, offs, err, want)
		}
		s, ok := tab.find(name, nil)
		if !ok || s.Value != 0x1000 {
			t.Errorf("shift %d: find = %+v, %v; want value 0x1000", d, s, ok)
		}
		// Hiding the first, the second wins.
		s, ok = tab.find(name, func(i int) bool { return i == nsyms })
		if !ok || s.Value != 0x1001 {
			t.Errorf("shift %d: find preferring visible = %+v, %v", d, s, ok)
		}
		if _, ok := tab.find("target_nam", nil); ok {
			t.Errorf("shift %d: prefix of the name found", d)
		}
	}
}
