package pyproc

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"sync"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/memory"
)

// interpSymbols are exported by every CPython interpreter image and by no
// program that merely links against one (there they are SHN_UNDEF).
var interpSymbols = []string{"Py_Initialize", "PyRun_SimpleString", "_PyRuntime"}

// libpythonRE matches the file name of a libpython and captures its
// major and minor version.
var libpythonRE = regexp.MustCompile(`^libpython(\d)\.(\d{1,2})[a-z]*\.so`)

// pythonNameRE finds a version in a file name ("python3.11", "libpython2.7.so").
var pythonNameRE = regexp.MustCompile(`python(\d)\.(\d{1,2})`)

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
	defer f.Close()
	e, err := elfsym.Open(f)
	if err != nil {
		return &image{}, nil // not ELF (or not 64-bit): not an interpreter
	}
	_, hasRuntime := e.Section(".PyRuntime")
	img := &image{openedAs: openedAs}
	if !hasRuntime && !e.Defines(interpSymbols...) {
		return img, nil
	}
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
		if m := pythonNameRE.FindStringSubmatch(name); m != nil {
			hintMajor, _ = strconv.Atoi(m[1])
			hintMinor, _ = strconv.Atoi(m[2])
			break
		}
	}
	if s, ok := e.Lookup("Py_Version"); ok {
		var b [4]byte
		if err := e.ReadVirtual(b[:], s.Value); err == nil {
			v, err := DecodeHex(memory.Order.Uint32(b[:]))
			if err == nil && (hintMajor < 0 || (v.Major == hintMajor && v.Minor == hintMinor)) {
				return v, "Py_Version", nil
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
	if data, err := e.SectionData(".rodata", 256<<20); err == nil {
		var found []Version
		for _, s := range versionStrings(data, 64) {
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

// versionTailRE matches a PY_VERSION string at the end of a string.
var versionTailRE = regexp.MustCompile(`(\d\.\d{1,2}\.\d{1,2}(?:(?:a|b|rc)\d{1,2}|\+)?)$`)

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
		if end > i && (isDigit(data[end-1]) || data[end-1] == '+') {
			from := max(i, end-24)
			if loc := versionTailRE.FindIndex(data[from:end]); loc != nil {
				start := from + loc[0]
				if start == i || (!isDigit(data[start-1]) && data[start-1] != '.') {
					out = append(out, string(data[start:end]))
				}
			}
		}
		i = end + 1
	}
	return out
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
