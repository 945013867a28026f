package pyproc

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/memory"
)

// interpSymbols are exported by every CPython interpreter image and by no
// program that merely links against one (there they are SHN_UNDEF).
var interpSymbols = []string{"Py_Initialize", "PyRun_SimpleString", "_PyRuntime"}

// fileKey identifies a mapped file across processes and mount namespaces.
type fileKey struct {
	major, minor uint32
	inode        uint64
}

func keyOf(m procfs.Mapping) fileKey { return fileKey{m.Major, m.Minor, m.Inode} }

// image is what one ELF file tells about Python. It depends only on the
// file, so it is cached per fileKey.
type image struct {
	elf      *elfsym.File // nil when the file is not an interpreter
	interp   bool
	version  Version
	source   string // how the version was found
	verErr   error
	openedAs string
}

// analyze opens the file behind m as p sees it and decides whether it
// holds an interpreter, and which version.
func analyze(p procfs.Proc, m procfs.Mapping) (*image, error) {
	f, openedAs, err := p.OpenMapping(m)
	if err != nil {
		return nil, err
	}
	e, err := elfsym.Open(f)
	if err != nil {
		f.Close()
		return &image{}, nil // not ELF (or not 64-bit): not an interpreter
	}
	_, hasRuntime := e.Section(".PyRuntime")
	img := &image{openedAs: openedAs}
	if !hasRuntime && !e.Defines(interpSymbols...) {
		f.Close()
		return img, nil
	}
	// The interpreter's symbols are read on demand (Python.Symbol), so its
	// file stays open as long as the image is reachable; the os.File's
	// own cleanup closes it after.
	img.interp = true
	if err := e.LoadSymtab(); err != nil {
		return nil, fmt.Errorf("loading symbols of %s: %w", m.Path, err)
	}
	img.version, img.source, img.verErr = fileVersion(e, m.Path)
	img.elf = e
	return img, nil
}

// fileVersion finds the interpreter's version without running anything:
// the Py_Version constant (3.11+), else the PY_VERSION string in .rodata
// checked against the file name and the symbol set, else the file name.
func fileVersion(e *elfsym.File, filePath string) (Version, string, error) {
	hintMajor, hintMinor := -1, -1
	for _, name := range []string{e.Soname, path.Base(filePath)} {
		if major, minor, ok := nameVersion(name); ok {
			hintMajor, hintMinor = major, minor
			break
		}
	}
	// Py_Version exists from 3.11 on: when the name says an older version,
	// looking for it (in .symtab too) is wasted time.
	oldByName := hintMajor >= 0 && (hintMajor < 3 || (hintMajor == 3 && hintMinor < 11))
	if !oldByName {
		if s, ok := e.Lookup("Py_Version"); ok {
			var b [4]byte
			if err := e.ReadVirtual(b[:], s.Value); err == nil {
				v, err := DecodeHex(memory.Order.Uint32(b[:]))
				if err == nil && (hintMajor < 0 || (v.Major == hintMajor && v.Minor == hintMinor)) {
					return v, "Py_Version", nil
				}
			}
		}
	}
	// Constraints from the symbol set.
	major := hintMajor
	if major < 0 {
		switch {
		case e.Defines("PyString_FromString"):
			major = 2
		case e.Defines("PyUnicode_FromString"):
			major = 3
		}
	}
	minMinor := 0
	if _, ok := e.Section(".PyRuntime"); ok {
		minMinor = 10
	} else if e.Defines("_PyRuntime") {
		minMinor = 7
	}
	fits := func(v Version) bool {
		if major >= 0 && v.Major != major {
			return false
		}
		if hintMinor >= 0 && v.Minor != hintMinor {
			return false
		}
		return v.Major == 2 || v.Minor >= minMinor
	}
	var cands []string
	var scanErr error
	if major >= 0 && hintMinor >= 0 {
		// Only major.minor.* fits: look for that prefix, a chunk at a time.
		var sr *io.SectionReader
		if sr, scanErr = e.SectionReader(".rodata"); scanErr == nil {
			cands, scanErr = scanVersionStrings(sr, sr.Size(), major, hintMinor, 64)
		}
	} else {
		var data []byte
		if data, scanErr = e.SectionData(".rodata", 256<<20); scanErr == nil {
			cands = versionStrings(data, 64)
		}
	}
	if scanErr == nil {
		var found []Version
		for _, s := range cands {
			if v, err := ParseVersion(s); err == nil && fits(v) && !containsVersion(found, v) {
				found = append(found, v)
			}
		}
		if len(found) == 1 {
			return found[0], "PY_VERSION", nil
		}
		if len(found) > 1 {
			return Version{}, "", fmt.Errorf("finding version of %s: %d candidate strings (%v, %v, ...)", filePath, len(found), found[0], found[1])
		}
	}
	if hintMajor >= 0 {
		return Version{Major: hintMajor, Minor: hintMinor, Level: "final"}, "file name", nil
	}
	return Version{}, "", fmt.Errorf("finding version of %s: no Py_Version, no version string, no version in the name", filePath)
}

func containsVersion(vs []Version, v Version) bool {
	for _, w := range vs {
		if w == v {
			return true
		}
	}
	return false
}

// versionStrings returns the "X.Y.Z" strings that end a NUL-terminated
// string of data, at most limit of them. The linker merges string tails,
// so PY_VERSION may end a longer string such as an install prefix
// ("/opt/python/3.9.18"); the match must not follow a digit or a dot.
func versionStrings(data []byte, limit int) []string {
	var out []string
	for i := 0; i < len(data) && len(out) < limit; {
		j := bytes.IndexByte(data[i:], 0)
		if j < 0 {
			break
		}
		end := i + j
		if v, ok := tailVersion(data, i, end); ok {
			out = append(out, v)
		}
		i = end + 1
	}
	return out
}

// maxVersionTail is the longest tail of a string examined for a version.
const maxVersionTail = 24

// tailVersion returns the version string ending the string data[i:end]
// (data[end] is its NUL). i may be -1 when the string starts before
// end-maxVersionTail (only the tail is examined).
func tailVersion(data []byte, i, end int) (string, bool) {
	if end <= i || end == 0 || !(isDigit(data[end-1]) || data[end-1] == '+') {
		return "", false
	}
	from := max(i, end-maxVersionTail, 0)
	k := versionTail(string(data[from:end]))
	if k < 0 {
		return "", false
	}
	start := from + k
	if start != i && (isDigit(data[start-1]) || data[start-1] == '.') {
		return "", false
	}
	return string(data[start:end]), true
}

// versionStringsOf returns what versionStrings does, restricted to the
// versions major.minor.*, at most limit of them, finding them by their
// prefix rather than examining every string.
func versionStringsOf(data []byte, major, minor, limit int) []string {
	var out []string
	lastEnd := -1
	versionHits(data, 0, versionNeedle(major, minor), 0, len(data), &lastEnd, func(v string) bool {
		out = append(out, v)
		return len(out) < limit
	})
	return out
}

func versionNeedle(major, minor int) []byte {
	return []byte(strconv.Itoa(major) + "." + strconv.Itoa(minor) + ".")
}

// versionHits calls emit with the version string that ends each string
// of data holding needle at an offset in [from, to), until emit returns
// false; it returns false then. data starts at offset base of a larger
// buffer; *lastEnd (an offset in it) skips a string already reported.
// The bytes maxVersionTail+1 before from and after to must be in data
// unless data starts or ends the buffer there.
func versionHits(data []byte, base int, needle []byte, from, to int, lastEnd *int, emit func(string) bool) bool {
	for pos := from; pos < to; {
		k := bytes.Index(data[pos:], needle)
		if k < 0 || pos+k >= to {
			return true
		}
		hit := pos + k
		pos = hit + 1
		// The version ends its string within a few bytes of its start.
		win := data[hit:min(len(data), hit+maxVersionTail+1)]
		j := bytes.IndexByte(win, 0)
		if j < 0 {
			continue
		}
		end := hit + j
		pos = end + 1
		if base+end == *lastEnd {
			continue
		}
		*lastEnd = base + end
		i := -1
		lo := max(0, end-maxVersionTail-1)
		if n := bytes.LastIndexByte(data[lo:end], 0); n >= 0 {
			i = lo + n + 1
		} else if lo == 0 && base == 0 {
			i = 0
		}
		if v, ok := tailVersion(data, i, end); ok && strings.HasPrefix(v, string(needle)) && !emit(v) {
			return false
		}
	}
	return true
}

// scanChunk is how much of a section is read at once; scanOverlap is the
// overlap of successive chunks, enough for the context of a hit.
const (
	scanChunk   = 128 << 10
	scanOverlap = 2 * (maxVersionTail + 8)
)

// scanVersionStrings is versionStringsOf over the size bytes of r, read a
// chunk at a time.
func scanVersionStrings(r io.ReaderAt, size int64, major, minor, limit int) ([]string, error) {
	needle := versionNeedle(major, minor)
	buf := make([]byte, min(size, scanChunk))
	var out []string
	lastEnd := -1
	emit := func(v string) bool {
		out = append(out, v)
		return len(out) < limit
	}
	const half = scanOverlap / 2
	for start := int64(0); start < size; start += scanChunk - scanOverlap {
		n := min(int64(len(buf)), size-start)
		data := buf[:n]
		if _, err := r.ReadAt(data, start); err != nil {
			return nil, fmt.Errorf("reading .rodata at %#x: %w", start, err)
		}
		from, to := half, int(n)-half
		if start == 0 {
			from = 0
		}
		last := start+n >= size
		if last {
			to = int(n)
		}
		if !versionHits(data, int(start), needle, from, to, &lastEnd, emit) || last {
			break
		}
	}
	return out, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// imageCache caches analyze per file.
type imageCache struct {
	mu sync.Mutex
	m  map[fileKey]*image
}

func (c *imageCache) get(p procfs.Proc, m procfs.Mapping) (*image, error) {
	k := keyOf(m)
	c.mu.Lock()
	img, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return img, nil
	}
	img, err := analyze(p, m)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[fileKey]*image{}
	}
	c.m[k] = img
	c.mu.Unlock()
	return img, nil
}
