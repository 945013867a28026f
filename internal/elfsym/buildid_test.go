package elfsym

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"testing"
)

// elfWithNote is a minimal 64-bit ELF image: its header, one PT_NOTE
// program header, and a GNU build-id note of id.
func elfWithNote(id []byte) []byte {
	le := binary.LittleEndian
	b := make([]byte, 120, 256)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS], b[elf.EI_DATA] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB)
	le.PutUint64(b[32:], 64) // e_phoff
	le.PutUint16(b[54:], 56) // e_phentsize
	le.PutUint16(b[56:], 1)  // e_phnum
	ph := b[64:]
	le.PutUint32(ph, uint32(elf.PT_NOTE))
	le.PutUint64(ph[8:], 120)                        // p_offset
	le.PutUint64(ph[32:], uint64(16+(len(id)+3)&^3)) // p_filesz
	note := make([]byte, 16+(len(id)+3)&^3)
	le.PutUint32(note, 4)
	le.PutUint32(note[4:], uint32(len(id)))
	le.PutUint32(note[8:], ntGNUBuildID)
	copy(note[12:], "GNU\x00")
	copy(note[16:], id)
	return append(b, note...)
}

// TestBuildID: the build-id of a well-formed image; every truncation of
// it, and the same image with hostile counts and sizes, gives "" (never a
// panic, never a read past what is there).
func TestBuildID(t *testing.T) {
	img := elfWithNote([]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5})
	if got := BuildID(bytes.NewReader(img)); got != "deadbeef0102030405" {
		t.Fatalf("build-id %q", got)
	}
	for n := 0; n < len(img); n++ {
		if got := BuildID(bytes.NewReader(img[:n])); got != "" {
			t.Errorf("truncated to %d bytes: %q", n, got)
		}
	}
	le := binary.LittleEndian
	for name, mod := range map[string]func(b []byte){
		"phnum":     func(b []byte) { le.PutUint16(b[56:], 0xffff) },
		"phoff":     func(b []byte) { le.PutUint64(b[32:], 1<<62) },
		"phentsize": func(b []byte) { le.PutUint16(b[54:], 8) },
		"filesz":    func(b []byte) { le.PutUint64(b[64+32:], 1<<62) },
		"offset":    func(b []byte) { le.PutUint64(b[64+8:], 1<<63) },
		"namesz":    func(b []byte) { le.PutUint32(b[120:], 0xfffffff0) },
		"descsz":    func(b []byte) { le.PutUint32(b[124:], 0xfffffff0) },
		"class":     func(b []byte) { b[elf.EI_CLASS] = byte(elf.ELFCLASS32) },
	} {
		b := append([]byte(nil), img...)
		mod(b)
		if got := BuildID(bytes.NewReader(b)); got != "" {
			t.Errorf("%s: %q", name, got)
		}
	}
}
