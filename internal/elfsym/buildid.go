package elfsym

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"io"
)

// Bounds of what BuildID reads: a file (or a core's image of one) is
// hostile input.
const (
	maxPhnum     = 256
	maxNoteSize  = 1 << 16
	ntGNUBuildID = 3 // NT_GNU_BUILD_ID, in a "GNU" note
)

// BuildID reads the GNU build-id (hex) of a 64-bit little-endian ELF
// file from the notes its program headers point to (File.BuildID reads
// the section; a core's image of a file's start has no section headers) (PT_NOTE), "" when it
// has none or is no such file. r is the file, or the image of its start
// as mapped (its first segment maps file offset 0, so file offsets are
// offsets in the image): a core's dumped first page, a live file.
func BuildID(r io.ReaderAt) string {
	le := binary.LittleEndian
	var h [64]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return ""
	}
	if string(h[:4]) != elf.ELFMAG || h[elf.EI_CLASS] != byte(elf.ELFCLASS64) || h[elf.EI_DATA] != byte(elf.ELFDATA2LSB) {
		return ""
	}
	phoff, phentsize, phnum := le.Uint64(h[32:]), uint64(le.Uint16(h[54:])), uint64(le.Uint16(h[56:]))
	if phentsize < 56 || phnum > maxPhnum || phoff > 1<<40 {
		return ""
	}
	ph := make([]byte, phnum*phentsize)
	if _, err := r.ReadAt(ph, int64(phoff)); err != nil {
		return ""
	}
	for i := uint64(0); i < phnum; i++ {
		p := ph[i*phentsize:]
		if elf.ProgType(le.Uint32(p)) != elf.PT_NOTE {
			continue
		}
		off, size := le.Uint64(p[8:]), le.Uint64(p[32:])
		if size > maxNoteSize || off > 1<<40 {
			continue
		}
		b := make([]byte, size)
		if _, err := r.ReadAt(b, int64(off)); err != nil {
			continue
		}
		if id := noteBuildID(b); id != "" {
			return id
		}
	}
	return ""
}

// noteBuildID finds NT_GNU_BUILD_ID in a run of ELF notes.
func noteBuildID(b []byte) string {
	le := binary.LittleEndian
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:])), le.Uint32(b[8:])
		b = b[12:]
		nz, dz := (namesz+3)&^3, (descsz+3)&^3
		if nz > uint64(len(b)) || descsz > uint64(len(b))-nz {
			return ""
		}
		if typ == ntGNUBuildID && string(b[:namesz]) == "GNU\x00" && descsz > 0 && descsz <= 64 {
			return hex.EncodeToString(b[nz : nz+descsz])
		}
		if nz+dz > uint64(len(b)) {
			return ""
		}
		b = b[nz+dz:]
	}
	return ""
}
