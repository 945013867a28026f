package elfsym

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFuncAt: every sized function of a file's tables is found by an
// address inside it, with its offset, by FuncAt (the one of the same
// address FuncAt picked, when several share it); an address past its
// end is not unless another function holds it.
func TestFuncAt(t *testing.T) {
	files := testFiles(t)
	// libc6-dbg's debug file of libc keeps versions in some .symtab
	// names (__libc_start_main@@GLIBC_2.34).
	if m, _ := filepath.Glob("/usr/lib/debug/.build-id/*/*.debug"); len(m) > 0 {
		files = append(files, m...)
	}
	for _, path := range files {
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Open(fh)
		if err != nil {
			t.Fatal(err)
		}
		ef, err := elf.NewFile(fh)
		if err != nil {
			t.Fatal(err)
		}
		syms, _ := ef.Symbols()
		if len(syms) == 0 {
			syms, _ = ef.DynamicSymbols()
		}
		byAddr := map[uint64][]string{}
		for _, s := range syms {
			if typ := elf.ST_TYPE(s.Info); (typ == elf.STT_FUNC || typ == elf.STT_GNU_IFUNC) && s.Value != 0 && s.Size > 1 && s.Section != elf.SHN_UNDEF {
				byAddr[s.Value] = append(byAddr[s.Value], s.Name)
			}
		}
		n := 0
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 || s.Size <= 1 || s.Section == elf.SHN_UNDEF {
				continue
			}
			name, off, ok := e.FuncAt(s.Value + 1)
			found := false
			for _, c := range byAddr[s.Value] {
				c, _, _ = strings.Cut(c, "@") // FuncAt drops symbol versions
				found = found || c == name
			}
			if strings.Contains(name, "@") {
				t.Errorf("%s: FuncAt(%#x) = %q, with its version", path, s.Value+1, name)
			}
			if !ok || off != 1 || !found {
				// Another function of the same address but a smaller
				// size may end before; report only real misses.
				t.Errorf("%s: FuncAt(%s+1 = %#x) = %q+%d, %v", path, s.Name, s.Value+1, name, off, ok)
				break
			}
			n++
		}
		if _, _, ok := e.FuncAt(0); ok {
			t.Errorf("%s: FuncAt(0) found a function", path)
		}
		t.Logf("%s: %d functions found", path, n)
		fh.Close()
	}
}
