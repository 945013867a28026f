package elfsym

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Limits on what is read from a file, so that a corrupt or hostile file
// cannot make pyglass allocate without bound.
const (
	sym64Size     = 24
	maxStrtab     = 256 << 20
	maxHashTable  = 64 << 20
	maxDynamic    = 1 << 20
	maxNameLen    = 4096
	versymHidden  = 0x8000
	gnuHashHeader = 16
)

var le = binary.LittleEndian

// GNUHash returns the hash DT_GNU_HASH tables use for name (the one of
// glibc's dl_new_hash: h = h*33 + c, starting at 5381).
func GNUHash(name string) uint32 {
	h := uint32(5381)
	for i := 0; i < len(name); i++ {
		h = h*33 + uint32(name[i])
	}
	return h
}

// symTable is a symbol table section and its string table. Single
// entries are read from the file on demand; load reads both whole.
type symTable struct {
	r    io.ReaderAt
	size int64        // of the file, -1 when unknown (see File.size)
	sec  *elf.Section // SHT_SYMTAB or SHT_DYNSYM; nil when absent
	str  *elf.Section

	loaded bool
	err    error
	syms   []byte
	strs   []byte
}

// table returns the symbol table of section type typ, or an empty one.
func (e *File) table(typ elf.SectionType) symTable {
	s := e.f.SectionByType(typ)
	if s == nil || s.Type == elf.SHT_NOBITS || int(s.Link) >= len(e.f.Sections) || s.Link == 0 {
		return symTable{}
	}
	str := e.f.Sections[s.Link]
	if str.Type != elf.SHT_STRTAB {
		return symTable{}
	}
	return symTable{r: e.r, size: e.size, sec: s, str: str}
}

// count returns the number of entries, at most maxSymbols.
func (t *symTable) count() int {
	if t.sec == nil {
		return 0
	}
	return int(min(t.sec.Size/sym64Size, maxSymbols))
}

// load reads the whole tables into memory.
func (t *symTable) load() error {
	if t.loaded {
		return t.err
	}
	t.loaded = true
	if t.sec == nil {
		t.err = errors.New("no symbol table")
		return t.err
	}
	if t.str.Size > maxStrtab {
		t.err = fmt.Errorf("reading %s: %d bytes, limit %d", t.str.Name, t.str.Size, maxStrtab)
		return t.err
	}
	if !inFile(t.size, t.sec.Offset, uint64(t.count())*sym64Size) || !inFile(t.size, t.str.Offset, t.str.Size) {
		t.err = fmt.Errorf("reading %s: past the end of the file (%d bytes)", t.sec.Name, t.size)
		return t.err
	}
	syms := make([]byte, t.count()*sym64Size)
	if _, err := t.r.ReadAt(syms, int64(t.sec.Offset)); err != nil {
		t.err = fmt.Errorf("reading %s: %w", t.sec.Name, err)
		return t.err
	}
	strs := make([]byte, t.str.Size)
	if _, err := t.r.ReadAt(strs, int64(t.str.Offset)); err != nil {
		t.err = fmt.Errorf("reading %s: %w", t.str.Name, err)
		return t.err
	}
	t.syms, t.strs = syms, strs
	return nil
}

// rawSym is an Elf64_Sym.
type rawSym struct {
	name  uint32
	info  uint8
	shndx uint16
	value uint64
	size  uint64
}

func decodeSym(b []byte) rawSym {
	return rawSym{name: le.Uint32(b), info: b[4], shndx: le.Uint16(b[6:]), value: le.Uint64(b[8:]), size: le.Uint64(b[16:])}
}

// defined reports whether s is a symbol Lookup may return: defined and
// neither a section nor a file symbol.
func (s rawSym) defined() bool {
	if elf.SectionIndex(s.shndx) == elf.SHN_UNDEF {
		return false
	}
	t := elf.ST_TYPE(s.info)
	return t != elf.STT_SECTION && t != elf.STT_FILE
}

func (s rawSym) symbol(name string) Symbol {
	return Symbol{Name: name, Value: s.value, Size: s.size, Type: elf.ST_TYPE(s.info)}
}

// sym returns entry i, from memory when loaded, else from the file.
func (t *symTable) sym(i int) (rawSym, error) {
	if t.syms != nil {
		return decodeSym(t.syms[i*sym64Size:]), nil
	}
	var b [sym64Size]byte
	if _, err := t.r.ReadAt(b[:], int64(t.sec.Offset)+int64(i)*sym64Size); err != nil {
		return rawSym{}, fmt.Errorf("reading symbol %d of %s: %w", i, t.sec.Name, err)
	}
	return decodeSym(b[:]), nil
}

// nameIs reports whether the string at off in the string table is name.
func (t *symTable) nameIs(off uint32, name string) bool {
	if uint64(off)+uint64(len(name)) >= t.str.Size {
		return false
	}
	if t.strs != nil {
		s := t.strs[off:]
		return len(s) > len(name) && string(s[:len(name)]) == name && s[len(name)] == 0
	}
	b := make([]byte, len(name)+1)
	if _, err := t.r.ReadAt(b, int64(t.str.Offset)+int64(off)); err != nil {
		return false
	}
	return string(b[:len(name)]) == name && b[len(name)] == 0
}

// find returns the first defined symbol called name. When hidden is not
// nil, a later symbol for which it is false wins over earlier ones for
// which it is true (symbol versions). Unless the table is loaded, it
// streams the string table to find where name is, then the symbols to
// find which of them point there, a chunk at a time.
func (t *symTable) find(name string, hidden func(i int) bool) (Symbol, bool) {
	if t.sec == nil {
		return Symbol{}, false
	}
	var found Symbol
	ok := false
	match := func(i int, s rawSym) bool {
		if !ok {
			found, ok = s.symbol(name), true
		}
		if hidden == nil || !hidden(i) {
			found = s.symbol(name)
			return false
		}
		return true
	}
	if t.syms != nil {
		n := t.count()
		first := name[0]
		for i := 1; i < n; i++ {
			b := t.syms[i*sym64Size:]
			off := le.Uint32(b)
			if int(off) >= len(t.strs) || t.strs[off] != first {
				continue
			}
			s := decodeSym(b)
			if s.defined() && t.nameIs(off, name) && !match(i, s) {
				break
			}
		}
		return found, ok
	}
	offs, err := t.nameOffsets(name)
	if err != nil || len(offs) == 0 {
		return Symbol{}, false
	}
	t.scan(func(i int, s rawSym) bool {
		if !s.defined() || !slices.Contains(offs, s.name) {
			return true
		}
		return match(i, s)
	})
	return found, ok
}

// Chunks in which tables are streamed.
const (
	strChunk = 64 << 10
	symChunk = (64 << 10) / sym64Size * sym64Size
	// maxNameOffsets bounds the places a name is found at in a string table.
	maxNameOffsets = 4096
)

// nameOffsets returns the offsets in the string table where the string
// name (NUL-terminated) is, reading it a chunk at a time.
func (t *symTable) nameOffsets(name string) ([]uint32, error) {
	pat := append([]byte(name), 0)
	size := int64(t.str.Size)
	if size > maxStrtab {
		return nil, fmt.Errorf("reading %s: %d bytes, limit %d", t.str.Name, size, maxStrtab)
	}
	// Look for pat's rarest byte (the fastest search), then compare.
	k := 0
	for i := range pat {
		if symbolByteRank[pat[i]] > symbolByteRank[pat[k]] {
			k = i
		}
	}
	buf := make([]byte, min(size, strChunk+int64(len(pat))))
	var offs []uint32
	// Each chunk reads len(pat)-1 bytes more than it advances, so that a
	// match across the boundary is seen once, in the chunk it starts in.
	for start := int64(0); start < size; start += strChunk {
		n := min(int64(len(buf)), size-start)
		data := buf[:n]
		if _, err := t.r.ReadAt(data, int64(t.str.Offset)+start); err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.str.Name, err)
		}
		for pos := k; pos < len(data); {
			j := bytes.IndexByte(data[pos:], pat[k])
			if j < 0 {
				break
			}
			at := pos + j - k // where pat would start
			pos += j + 1
			if at >= strChunk {
				break
			}
			if at+len(pat) <= len(data) && bytes.Equal(data[at:at+len(pat)], pat) {
				offs = append(offs, uint32(start)+uint32(at))
				if len(offs) >= maxNameOffsets {
					return offs, nil
				}
			}
		}
	}
	return offs, nil
}

// symbolByteRank ranks bytes by how rare they are in symbol names (in
// the string table of a libpython): higher is rarer.
var symbolByteRank = func() [256]byte {
	const common = "_tesolcnra\x00ipmbdvyuP21ghxf64I35w.0SkECT78BFGLOA9qzDMRUjNWHVKXYJQZ-"
	var r [256]byte
	for i := range r {
		r[i] = 255 // absent from the list: rarer than any in it
	}
	for i := 0; i < len(common); i++ {
		r[common[i]] = byte(i)
	}
	return r
}()

// scan calls fn with every symbol but the first (null) one, reading the
// table a chunk at a time, until fn returns false.
func (t *symTable) scan(fn func(i int, s rawSym) bool) {
	n := t.count()
	buf := make([]byte, min(n*sym64Size, symChunk))
	for first := 0; first < n; first += len(buf) / sym64Size {
		m := min(len(buf)/sym64Size, n-first)
		data := buf[:m*sym64Size]
		if _, err := t.r.ReadAt(data, int64(t.sec.Offset)+int64(first)*sym64Size); err != nil {
			return
		}
		for j := 0; j < m; j++ {
			if i := first + j; i > 0 && !fn(i, decodeSym(data[j*sym64Size:])) {
				return
			}
		}
	}
}

// each calls fn for every defined named symbol until fn returns false.
// The table must be loaded.
func (t *symTable) each(fn func(name []byte, s Symbol) bool) {
	n := t.count()
	for i := 1; i < n; i++ {
		s := decodeSym(t.syms[i*sym64Size:])
		if !s.defined() || int(s.name) >= len(t.strs) {
			continue
		}
		name := t.strs[s.name:]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		if len(name) == 0 {
			continue
		}
		if !fn(name, s.symbol(string(name))) {
			return
		}
	}
}

// gnuHashTable is a parsed DT_GNU_HASH section.
type gnuHashTable struct {
	symOffset  uint32
	bloomShift uint32
	bloom      []uint64
	buckets    []uint32
	chain      []uint32 // hash values of symbols symOffset, symOffset+1, ...
}

// parseGNUHash parses the contents of a .gnu.hash section of a 64-bit
// little-endian file.
func parseGNUHash(b []byte) (*gnuHashTable, error) {
	if len(b) < gnuHashHeader {
		return nil, errors.New("parsing .gnu.hash: truncated header")
	}
	nbuckets, symOffset, bloomSize, bloomShift := le.Uint32(b), le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:])
	rest := b[gnuHashHeader:]
	if bloomSize == 0 || nbuckets == 0 || uint64(bloomSize)*8+uint64(nbuckets)*4 > uint64(len(rest)) {
		return nil, fmt.Errorf("parsing .gnu.hash: %d buckets and %d bloom words do not fit in %d bytes", nbuckets, bloomSize, len(b))
	}
	h := &gnuHashTable{symOffset: symOffset, bloomShift: bloomShift, bloom: make([]uint64, bloomSize), buckets: make([]uint32, nbuckets)}
	for i := range h.bloom {
		h.bloom[i] = le.Uint64(rest[8*i:])
	}
	rest = rest[8*bloomSize:]
	for i := range h.buckets {
		h.buckets[i] = le.Uint32(rest[4*i:])
	}
	rest = rest[4*nbuckets:]
	h.chain = make([]uint32, len(rest)/4)
	for i := range h.chain {
		h.chain[i] = le.Uint32(rest[4*i:])
	}
	return h, nil
}

// candidates calls fn with the index of each symbol whose hash is h, in
// table order, until fn returns false. nsyms bounds the walk.
func (g *gnuHashTable) candidates(h uint32, nsyms int, fn func(i int) bool) {
	word := g.bloom[(h/64)%uint32(len(g.bloom))]
	mask := uint64(1)<<(h%64) | uint64(1)<<((h>>(g.bloomShift%32))%64)
	if word&mask != mask {
		return
	}
	i := g.buckets[h%uint32(len(g.buckets))]
	if i < g.symOffset {
		return // empty bucket
	}
	for ; int(i) < nsyms && int(i-g.symOffset) < len(g.chain); i++ {
		c := g.chain[i-g.symOffset]
		if c|1 == h|1 && !fn(int(i)) {
			return
		}
		if c&1 != 0 {
			return
		}
	}
}

// hashTable returns the parsed .gnu.hash, reading it on first use, or nil.
func (e *File) hashTable() *gnuHashTable {
	if e.gh != nil || e.ghErr != nil {
		return e.gh
	}
	if e.gnuHash == nil || e.gnuHash.Type == elf.SHT_NOBITS || e.dyn.sec == nil || e.gnuHash.Link != e.dynIndex() {
		e.ghErr = errors.New("no .gnu.hash for .dynsym")
		return nil
	}
	if e.gnuHash.Size > maxHashTable {
		e.ghErr = fmt.Errorf("reading .gnu.hash: %d bytes, limit %d", e.gnuHash.Size, maxHashTable)
		return nil
	}
	if !inFile(e.size, e.gnuHash.Offset, e.gnuHash.Size) {
		e.ghErr = fmt.Errorf("reading .gnu.hash: past the end of the file (%d bytes)", e.size)
		return nil
	}
	b := make([]byte, e.gnuHash.Size)
	if _, err := e.r.ReadAt(b, int64(e.gnuHash.Offset)); err != nil {
		e.ghErr = fmt.Errorf("reading .gnu.hash: %w", err)
		return nil
	}
	e.gh, e.ghErr = parseGNUHash(b)
	return e.gh
}

// dynIndex returns the section index of .dynsym.
func (e *File) dynIndex() uint32 {
	for i, s := range e.f.Sections {
		if s == e.dyn.sec {
			return uint32(i)
		}
	}
	return 0
}

// hidden reports whether .dynsym entry i has a hidden (non-default)
// symbol version.
func (e *File) hidden(i int) bool {
	if e.versym == nil || e.versym.Type == elf.SHT_NOBITS || uint64(i)*2+2 > e.versym.Size {
		return false
	}
	var b [2]byte
	if _, err := e.r.ReadAt(b[:], int64(e.versym.Offset)+int64(i)*2); err != nil {
		return false
	}
	return le.Uint16(b[:])&versymHidden != 0
}

// lookupDynamic finds name in .dynsym: through .gnu.hash when present,
// else by scanning the table. e.mu is held.
func (e *File) lookupDynamic(name string) (Symbol, bool) {
	if e.dyn.sec == nil {
		return Symbol{}, false
	}
	if g := e.hashTable(); g != nil {
		var found Symbol
		ok := false
		g.candidates(GNUHash(name), e.dyn.count(), func(i int) bool {
			s, err := e.dyn.sym(i)
			if err != nil || !s.defined() || !e.dyn.nameIs(s.name, name) {
				return true
			}
			if !ok {
				found, ok = s.symbol(name), true
			}
			if e.hidden(i) {
				return true // a default version may follow
			}
			found = s.symbol(name)
			return false
		})
		return found, ok
	}
	return e.dyn.find(name, e.hidden)
}

// readDynamic reads DT_SONAME and DT_NEEDED from the dynamic section.
func (e *File) readDynamic() error {
	d := e.f.SectionByType(elf.SHT_DYNAMIC)
	if d == nil || d.Type == elf.SHT_NOBITS || d.Size > maxDynamic || int(d.Link) >= len(e.f.Sections) || !inFile(e.size, d.Offset, d.Size) {
		return nil
	}
	b := make([]byte, d.Size)
	if _, err := e.r.ReadAt(b, int64(d.Offset)); err != nil {
		return fmt.Errorf("reading dynamic section: %w", err)
	}
	str := e.f.Sections[d.Link]
	for i := 0; i+16 <= len(b); i += 16 {
		tag, val := elf.DynTag(le.Uint64(b[i:])), le.Uint64(b[i+8:])
		if tag == elf.DT_NULL {
			break
		}
		if tag != elf.DT_SONAME && tag != elf.DT_NEEDED {
			continue
		}
		s, err := e.cstring(str, val)
		if err != nil {
			continue
		}
		if tag == elf.DT_SONAME {
			if e.Soname == "" {
				e.Soname = s
			}
		} else {
			e.Needed = append(e.Needed, s)
		}
	}
	return nil
}

// cstring reads the NUL-terminated string at off in section s.
func (e *File) cstring(s *elf.Section, off uint64) (string, error) {
	if s.Type == elf.SHT_NOBITS || off >= s.Size {
		return "", fmt.Errorf("string offset %#x outside %s", off, s.Name)
	}
	var buf [128]byte
	var out []byte
	for pos := off; pos < s.Size && len(out) < maxNameLen; {
		n := min(uint64(len(buf)), s.Size-pos)
		if _, err := e.r.ReadAt(buf[:n], int64(s.Offset+pos)); err != nil {
			return "", fmt.Errorf("reading string at %#x of %s: %w", off, s.Name, err)
		}
		if j := bytes.IndexByte(buf[:n], 0); j >= 0 {
			return string(append(out, buf[:j]...)), nil
		}
		out = append(out, buf[:n]...)
		pos += n
	}
	return "", fmt.Errorf("string at %#x of %s: not terminated", off, s.Name)
}
