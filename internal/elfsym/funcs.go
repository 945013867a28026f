package elfsym

import (
	"debug/elf"
	"sort"
)

// funcSym is one function of the address index: its link-time range and
// its name's offset in the string table of tab.
type funcSym struct {
	start, end uint64
	name       uint32
	tab        *symTable
	local      bool
}

// maxFuncs bounds the address index (a hostile file's table is cut).
const maxFuncs = 1 << 21

// FuncAt returns the function whose link-time range holds addr (its
// name without a symbol version), from
// .symtab when the file has one, else from .dynsym, and how far into it
// addr is. A symbol without a size holds the addresses up to the next
// symbol. False when no function holds addr (a stripped static function:
// the caller shows the file and offset instead).
func (e *File) FuncAt(addr uint64) (name string, off uint64, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.funcsBuilt {
		e.funcsBuilt = true
		e.funcs = e.buildFuncs()
	}
	fs := e.funcs
	i := sort.Search(len(fs), func(i int) bool { return fs[i].start > addr }) - 1
	if i < 0 {
		return "", 0, false
	}
	f := fs[i]
	if addr >= f.end {
		return "", 0, false
	}
	strs := f.tab.strs
	if int(f.name) >= len(strs) {
		return "", 0, false
	}
	b := strs[f.name:]
	for j, c := range b {
		// The name ends at its NUL, or at a symbol version a .symtab
		// may keep in it ("__libc_start_main@@GLIBC_2.34").
		if c == 0 || (c == '@' && j > 0) {
			b = b[:j]
			break
		}
	}
	return string(b), addr - f.start, true
}

// buildFuncs reads the function symbols of both tables, sorted by address.
func (e *File) buildFuncs() []funcSym {
	var out []funcSym
	for _, t := range []*symTable{&e.symtab, &e.dyn} {
		if t.sec == nil || t.load() != nil {
			continue
		}
		n := t.count()
		for i := 1; i < n && len(out) < maxFuncs; i++ {
			s := decodeSym(t.syms[i*sym64Size:])
			typ := elf.ST_TYPE(s.info)
			if !s.defined() || (typ != elf.STT_FUNC && typ != elf.STT_GNU_IFUNC) || s.value == 0 || s.name == 0 {
				continue
			}
			out = append(out, funcSym{start: s.value, end: s.value + s.size, name: s.name, tab: t, local: elf.ST_BIND(s.info) == elf.STB_LOCAL})
		}
	}
	// Of several symbols at one address, one with a size (a .cold part
	// has often a sizeless alias), then a global one (the name callers
	// use, not a local alias), then the first (.symtab's) is kept; a
	// symbol without a size ends where the next one starts.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.start != b.start:
			return a.start < b.start
		case a.end-a.start != b.end-b.start:
			return a.end-a.start > b.end-b.start
		}
		return !a.local && b.local
	})
	w := 0
	for i, f := range out {
		if w > 0 && out[w-1].start == f.start {
			continue
		}
		if f.end == f.start {
			f.end = ^uint64(0)
			if i+1 < len(out) {
				f.end = out[i+1].start
			}
		}
		out[w] = f
		w++
	}
	return out[:w]
}

// BuildID returns the file's GNU build-id in hex (its
// .note.gnu.build-id section), "" when it has none.
func (e *File) BuildID() string {
	b, err := e.SectionData(".note.gnu.build-id", maxNoteSize)
	if err != nil {
		return ""
	}
	return noteBuildID(b)
}
