// Package elfsym reads what pyglass needs from an ELF file: symbols,
// section and segment ranges, and the load bias of a mapped image.
//
// Addresses returned by File are link-time virtual addresses; add the
// image's load bias (see Bias) to get the address in a process.
package elfsym

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
)

var (
	// ErrNotELF is returned for a file that is not a 64-bit ELF object.
	ErrNotELF = errors.New("not a 64-bit ELF file")
	// ErrNoSegment is returned when no PT_LOAD segment matches a mapping
	// or an address.
	ErrNoSegment = errors.New("no matching PT_LOAD segment")
)

// maxSymbols bounds the number of symbols examined in one table.
const maxSymbols = 4 << 20

// Range is a half-open address range [Start, End).
type Range struct {
	Start, End uint64
}

// Contains reports whether addr lies in r.
func (r Range) Contains(addr uint64) bool { return addr >= r.Start && addr < r.End }

// Size returns End-Start.
func (r Range) Size() uint64 { return r.End - r.Start }

// Add returns r moved by bias.
func (r Range) Add(bias uint64) Range { return Range{r.Start + bias, r.End + bias} }

// Segment is a PT_LOAD program header.
type Segment struct {
	Vaddr, Memsz uint64
	Off, Filesz  uint64
	Flags        elf.ProgFlag
	Align        uint64
}

// Symbol is a defined symbol.
type Symbol struct {
	Name  string
	Value uint64 // link-time address
	Size  uint64
	Type  elf.SymType
}

// File is a parsed ELF file. Its methods are safe for concurrent use.
//
// Symbols are looked up on demand: Open reads only the headers and the
// dynamic section; a lookup reads what it needs of .gnu.hash, .dynsym and
// .dynstr (or, for names .dynsym lacks, .symtab once LoadSymtab enabled
// it), and remembers the answer.
type File struct {
	r io.ReaderAt
	f *elf.File
	// size is the file's size, -1 when r does not say: a section that
	// claims bytes past it is not read (nor memory taken for them).
	size int64

	// Type is ET_EXEC (fixed addresses) or ET_DYN (PIE or shared object).
	Type elf.Type
	// Machine is the target architecture.
	Machine elf.Machine
	// Entry is the link-time entry point (e_entry).
	Entry uint64
	// Loads are the PT_LOAD segments in file order.
	Loads []Segment
	// Soname is DT_SONAME, or "" (executables have none).
	Soname string
	// Needed lists DT_NEEDED entries.
	Needed []string

	hasSymtab bool
	dyn       symTable // .dynsym and .dynstr
	symtab    symTable // .symtab and .strtab
	gnuHash   *elf.Section
	versym    *elf.Section

	mu           sync.Mutex
	symtabLoaded bool // LoadSymtab was called: lookups may use .symtab
	gh           *gnuHashTable
	ghErr        error
	cache        map[string]lookup // answers so far, misses included
	funcsBuilt   bool
	funcs        []funcSym // FuncAt's index, sorted by address
}

// lookup is a remembered answer of Lookup.
type lookup struct {
	sym Symbol
	ok  bool
}

// Open parses the ELF headers and the dynamic section of r. Symbols are
// read on demand, so r must stay readable while File is used for Lookup,
// Defines, ReadVirtual, SectionData or LoadSymtab.
func Open(r io.ReaderAt) (*File, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("parsing ELF: %w: %v", ErrNotELF, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("parsing ELF (%v %v): %w", f.Class, f.Data, ErrNotELF)
	}
	e := &File{r: r, f: f, size: readerSize(r), Type: f.Type, Machine: f.Machine, Entry: f.Entry, cache: map[string]lookup{}}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			e.Loads = append(e.Loads, Segment{Vaddr: p.Vaddr, Memsz: p.Memsz, Off: p.Off, Filesz: p.Filesz, Flags: p.Flags, Align: p.Align})
		}
	}
	e.hasSymtab = f.SectionByType(elf.SHT_SYMTAB) != nil
	e.dyn = e.table(elf.SHT_DYNSYM)
	e.symtab = e.table(elf.SHT_SYMTAB)
	e.gnuHash = f.SectionByType(elf.SHT_GNU_HASH)
	e.versym = f.SectionByType(elf.SHT_GNU_VERSYM)
	if err := e.readDynamic(); err != nil {
		return nil, err
	}
	return e, nil
}

// HasSymtab reports whether the file has a .symtab section.
func (e *File) HasSymtab() bool { return e.hasSymtab }

// LoadSymtab lets Lookup and Defines fall back to .symtab for names that
// .dynsym lacks. The table itself is read on the first such lookup. It
// does nothing when there is no .symtab.
func (e *File) LoadSymtab() error {
	if !e.hasSymtab {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.symtabLoaded {
		e.symtabLoaded = true
		// Misses remembered before now may be in .symtab.
		for k, v := range e.cache {
			if !v.ok {
				delete(e.cache, k)
			}
		}
	}
	return nil
}

// Lookup returns the defined symbol called name: from .dynsym, else, after
// LoadSymtab, from .symtab. When a table holds several definitions the
// first one wins (in .dynsym, a default symbol version is preferred over
// a hidden one).
func (e *File) Lookup(name string) (Symbol, bool) {
	if name == "" {
		return Symbol{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l, ok := e.cache[name]; ok {
		return l.sym, l.ok
	}
	s, ok := e.lookupDynamic(name)
	if !ok && e.symtabLoaded {
		s, ok = e.symtab.find(name, nil)
	}
	e.cache[name] = lookup{s, ok}
	return s, ok
}

// LookupDynamic returns the defined symbol called name from .dynsym only,
// using the GNU hash table when the file has one.
func (e *File) LookupDynamic(name string) (Symbol, bool) {
	if name == "" {
		return Symbol{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lookupDynamic(name)
}

// Defines reports whether the file defines any of names.
func (e *File) Defines(names ...string) bool {
	for _, n := range names {
		if _, ok := e.Lookup(n); ok {
			return true
		}
	}
	return false
}

// NumSymbols returns the number of distinct defined symbol names in
// .dynsym and, after LoadSymtab, .symtab. It reads the whole tables.
func (e *File) NumSymbols() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	tabs := []*symTable{&e.dyn}
	if e.symtabLoaded {
		tabs = append(tabs, &e.symtab)
	}
	for _, t := range tabs {
		if t.load() != nil {
			continue
		}
		t.each(func(name []byte, _ Symbol) bool {
			seen[string(name)] = true
			return true
		})
	}
	return len(seen)
}

// Section returns the link-time range of a section (".PyRuntime",
// ".data", ".bss", ".rodata", ".text", ...).
func (e *File) Section(name string) (Range, bool) {
	s := e.f.Section(name)
	if s == nil || s.Addr == 0 {
		return Range{}, false
	}
	return Range{s.Addr, s.Addr + s.Size}, true
}

// HasSection reports whether the file has a section named name.
func (e *File) HasSection(name string) bool { return e.f.Section(name) != nil }

// SectionData returns the contents of a section, refusing more than max
// bytes (decompressed, for a compressed section: debug files often have
// them). NOBITS sections (.bss) have no data.
func (e *File) SectionData(name string, max uint64) ([]byte, error) {
	s := e.f.Section(name)
	if s == nil {
		return nil, fmt.Errorf("reading section %s: not present", name)
	}
	if s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("reading section %s: no data in file", name)
	}
	if s.Size > max {
		return nil, fmt.Errorf("reading section %s: %d bytes, limit %d", name, s.Size, max)
	}
	if !inFile(e.size, s.Offset, s.FileSize) {
		return nil, fmt.Errorf("reading section %s: %d bytes at %d, past the end of the file (%d bytes)", name, s.FileSize, s.Offset, e.size)
	}
	if s.Flags&elf.SHF_COMPRESSED != 0 {
		// Size is the size the header claims once decompressed: memory
		// is taken as the bytes come.
		b, err := io.ReadAll(io.LimitReader(s.Open(), int64(s.Size)))
		if err == nil && uint64(len(b)) != s.Size {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, fmt.Errorf("reading section %s: %w", name, err)
		}
		return b, nil
	}
	b := make([]byte, s.Size)
	if _, err := e.r.ReadAt(b, int64(s.Offset)); err != nil {
		return nil, fmt.Errorf("reading section %s: %w", name, err)
	}
	return b, nil
}

// SectionReader returns a reader of the contents of a section, to read
// it a piece at a time. NOBITS sections (.bss) have no data.
func (e *File) SectionReader(name string) (*io.SectionReader, error) {
	s := e.f.Section(name)
	if s == nil {
		return nil, fmt.Errorf("reading section %s: not present", name)
	}
	if s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("reading section %s: no data in file", name)
	}
	return io.NewSectionReader(e.r, int64(s.Offset), int64(s.Size)), nil
}

// ReadVirtual reads len(p) bytes of the file image at link-time address
// addr, from the PT_LOAD segment holding it. Bytes past the segment's
// file size (zero-initialised memory) are not in the file: it fails.
func (e *File) ReadVirtual(p []byte, addr uint64) error {
	for _, s := range e.Loads {
		if addr >= s.Vaddr && addr+uint64(len(p)) <= s.Vaddr+s.Filesz {
			if _, err := e.r.ReadAt(p, int64(s.Off+addr-s.Vaddr)); err != nil {
				return fmt.Errorf("reading %d bytes at %#x of the file: %w", len(p), addr, err)
			}
			return nil
		}
	}
	return fmt.Errorf("reading %d bytes at %#x of the file: %w", len(p), addr, ErrNoSegment)
}

// SegmentRanges returns the link-time ranges [Vaddr, Vaddr+Memsz) of the
// PT_LOAD segments whose flags include all of want.
func (e *File) SegmentRanges(want elf.ProgFlag) []Range {
	var out []Range
	for _, s := range e.Loads {
		if s.Flags&want == want {
			out = append(out, Range{s.Vaddr, s.Vaddr + s.Memsz})
		}
	}
	return out
}

// Mapping describes where a piece of the file is mapped in a process, as
// read from /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Offset     uint64
	Read       bool
	Write      bool
	Exec       bool
}

// BiasOf returns the load bias implied by one mapping: the PT_LOAD holding
// file offset m.Offset, with flags matching the mapping's permissions,
// gives bias = m.Start - (Vaddr - (Off - m.Offset)) rounded to the page.
// For ET_EXEC the bias is 0 when the mapping matches a segment.
func (e *File) BiasOf(m Mapping) (uint64, error) {
	for _, s := range e.Loads {
		if !flagsMatch(s.Flags, m) {
			continue
		}
		// Segments start mid-page: the mapping starts at the page holding
		// Off (pages may be up to 64 KiB).
		if m.Offset >= s.Off+max(s.Filesz, 1) || m.Offset+maxPageSize <= s.Off {
			continue
		}
		vaddrAtOff := s.Vaddr - (s.Off - m.Offset) // may wrap; fine in modular arithmetic
		bias := m.Start - vaddrAtOff
		if e.Type == elf.ET_EXEC {
			if bias != 0 {
				continue
			}
			return 0, nil
		}
		if bias%pageSize != 0 {
			continue
		}
		return bias, nil
	}
	return 0, fmt.Errorf("mapping %#x-%#x offset %#x: %w", m.Start, m.End, m.Offset, ErrNoSegment)
}

// pageSize is the smallest page size; maxPageSize the largest (arm64 64K).
const (
	pageSize    = 4096
	maxPageSize = 65536
)

func flagsMatch(f elf.ProgFlag, m Mapping) bool {
	// RELRO makes a writable segment read-only in part after relocation, so
	// a non-writable mapping may come from a writable segment.
	if m.Exec != (f&elf.PF_X != 0) {
		return false
	}
	if m.Write && f&elf.PF_W == 0 {
		return false
	}
	return true
}

// Bias returns the load bias of the image from all its mappings: the bias
// that the most mappings agree on, preferring the one whose mappings
// cover the most PT_LOAD segments. A single stray mapping of a page of the
// file elsewhere (libffi's trampolines remap one; py-spy #865) is thus
// outvoted. ET_EXEC images have bias 0.
func (e *File) Bias(ms []Mapping) (uint64, error) {
	if e.Type == elf.ET_EXEC {
		return 0, nil
	}
	votes := map[uint64]int{}
	for _, m := range ms {
		if b, err := e.BiasOf(m); err == nil {
			votes[b]++
		}
	}
	if len(votes) == 0 {
		return 0, fmt.Errorf("computing load bias from %d mappings: %w", len(ms), ErrNoSegment)
	}
	type cand struct {
		bias          uint64
		votes, covers int
	}
	var cs []cand
	for b, v := range votes {
		cs = append(cs, cand{b, v, e.covered(b, ms)})
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].covers != cs[j].covers {
			return cs[i].covers > cs[j].covers
		}
		if cs[i].votes != cs[j].votes {
			return cs[i].votes > cs[j].votes
		}
		return cs[i].bias < cs[j].bias
	})
	return cs[0].bias, nil
}

// covered counts the PT_LOAD segments whose first page, moved by bias, is
// the start of one of ms.
func (e *File) covered(bias uint64, ms []Mapping) int {
	n := 0
	for _, s := range e.Loads {
		start := (s.Vaddr + bias) &^ (pageSize - 1)
		for _, m := range ms {
			if m.Start == start {
				n++
				break
			}
		}
	}
	return n
}

// readerSize returns the size of what r reads, -1 when it does not say.
func readerSize(r io.ReaderAt) int64 {
	switch v := r.(type) {
	case interface{ Size() int64 }: // bytes.Reader, io.SectionReader
		return v.Size()
	case *os.File:
		if st, err := v.Stat(); err == nil && st.Mode().IsRegular() {
			return st.Size()
		}
	}
	return -1
}

// inFile reports whether n bytes at off lie within a file of size bytes
// (size -1: not known, taken as yes).
func inFile(size int64, off, n uint64) bool {
	return size < 0 || off <= uint64(size) && n <= uint64(size)-off
}
