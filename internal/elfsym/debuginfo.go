package elfsym

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz"
)

// Bounds on what a hostile file makes pyglass read for its debug symbols.
const (
	maxDebugLink     = 4096      // the .gnu_debuglink section
	maxDebugData     = 64 << 20  // the compressed .gnu_debugdata
	maxDebugDataELF  = 256 << 20 // the ELF file it holds, decompressed
	maxDebugFileSize = 4 << 30   // a separate debug file whose CRC is computed
)

// DebugLink returns what the file's .gnu_debuglink section names: the
// base name of its separate debug file and that file's CRC-32 (as
// objcopy --add-gnu-debuglink wrote them). False when it has none, or a
// malformed one (a name with a slash, none, or no CRC).
func (e *File) DebugLink() (name string, crc uint32, ok bool) {
	b, err := e.SectionData(".gnu_debuglink", maxDebugLink)
	if err != nil {
		return "", 0, false
	}
	return parseDebugLink(b)
}

// parseDebugLink decodes a .gnu_debuglink section: the name, its NUL,
// padding to 4 bytes, the CRC-32.
func parseDebugLink(b []byte) (name string, crc uint32, ok bool) {
	n := bytes.IndexByte(b, 0)
	if n <= 0 {
		return "", 0, false
	}
	name = string(b[:n])
	at := (n + 4) &^ 3 // the name, its NUL, padding to 4 bytes
	if at+4 > len(b) || name == "." || name == ".." || bytes.ContainsRune(b[:n], '/') {
		return "", 0, false
	}
	return name, le.Uint32(b[at:]), true
}

// CRC32 returns the CRC-32 (IEEE, as .gnu_debuglink's) of the whole of
// r, read up to its end, refusing more than 4 GiB.
func CRC32(r io.ReaderAt) (uint32, error) {
	h := crc32.NewIEEE()
	n, err := io.Copy(h, io.NewSectionReader(r, 0, maxDebugFileSize+1))
	if err != nil {
		return 0, fmt.Errorf("computing the CRC of a debug file: %w", err)
	}
	if n > maxDebugFileSize {
		return 0, fmt.Errorf("computing the CRC of a debug file: more than %d bytes", int64(maxDebugFileSize))
	}
	return h.Sum32(), nil
}

// ErrNoDebugData is returned by MiniDebugInfo for a file without a
// .gnu_debugdata section.
var ErrNoDebugData = errors.New("no .gnu_debugdata section")

// MiniDebugInfo returns the ELF file held, xz-compressed, in the file's
// .gnu_debugdata section (MiniDebugInfo: a .symtab of the functions that
// .dynsym lacks, as Fedora and others ship), read whole into memory
// (at most 256 MiB decompressed).
func (e *File) MiniDebugInfo() (*File, error) {
	if e.f.Section(".gnu_debugdata") == nil {
		return nil, ErrNoDebugData
	}
	b, err := e.SectionData(".gnu_debugdata", maxDebugData)
	if err != nil {
		return nil, err
	}
	zr, err := xz.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("reading .gnu_debugdata: %w", err)
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(zr, maxDebugDataELF+1))
	if err != nil {
		return nil, fmt.Errorf("reading .gnu_debugdata: %w", err)
	}
	if n > maxDebugDataELF {
		return nil, fmt.Errorf("reading .gnu_debugdata: more than %d bytes decompressed", maxDebugDataELF)
	}
	d, err := Open(bytes.NewReader(out.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("reading .gnu_debugdata: %w", err)
	}
	return d, nil
}
