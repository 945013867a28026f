package pyproc

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"

	"debug/elf"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/procfs"
)

// Range is an absolute address range [Start, End) in the target.
type Range = elfsym.Range

// Region is an absolute address range of a named file's image.
type Region struct {
	Range
	Path string // the file, as the target sees it
}

// Python describes the interpreter found in a process. Addresses are
// absolute in the target's address space.
type Python struct {
	// Version is the interpreter's version, found without running it.
	Version Version
	// VersionSource says how: "Py_Version", "PY_VERSION" or "file name".
	VersionSource string
	// Path is the file holding the interpreter, as the target sees it.
	Path string
	// OpenedAs is the path pyglass read it by (/proc/PID/exe,
	// /proc/PID/root/..., /proc/PID/map_files/...).
	OpenedAs string
	// Shared is true when the interpreter is a shared library (libpython)
	// rather than linked into the main program.
	Shared bool
	// Bias is the load bias of the interpreter image: symbol values plus
	// Bias are addresses in the target.
	Bias uint64
	// Runtime is the .PyRuntime section (3.10+), or the zero Range.
	Runtime Range
	// Data are the interpreter image's writable data: .data, .bss and
	// .PyRuntime where present.
	Data []Region
	// Text are the executable segments of the interpreter image and, when
	// it is a shared library, of the main program that links it.
	Text []Region

	image *elfsym.File
	clib  *clibOnce // the C library's functions, resolved on first use
}

// CLib is what pyglass calls in the target's C library when it starts a
// thread there (exec, shell, the leak reports); the read-only commands
// never need it.
type CLib struct {
	// Path is the mapped C library, as the target sees it; "" when none
	// is mapped (a static program).
	Path string
	// Munmap is the address of its munmap, or 0.
	Munmap uint64
	// ErrnoLocation is the address of its __errno_location, or 0.
	ErrnoLocation uint64
	// Pthread holds the thread functions (pthread_create,
	// pthread_detach, pthread_attr_init, pthread_attr_setstacksize), from
	// libc or, before glibc 2.34, libpthread; zero when not all are found.
	Pthread [4]uint64
}

type clibOnce struct {
	once  sync.Once
	p     procfs.Proc
	files []*mappedFile
	lib   CLib
	err   error
}

// CLib finds the C library's functions in the target the first time it
// is called (reading the library's symbols), and returns the same
// answer after.
func (py *Python) CLib() (CLib, error) {
	c := py.clib
	if c == nil {
		return CLib{}, errors.New("no process to look in")
	}
	c.once.Do(func() { c.lib, c.err = findCLib(c.p, c.files) })
	return c.lib, c.err
}

// SectionData returns the named section of the interpreter image's file
// (at most max bytes, else an error), or nil when it has none.
func (py *Python) SectionData(name string, max uint64) ([]byte, error) {
	if py.image == nil {
		return nil, nil
	}
	if _, ok := py.image.Section(name); !ok {
		return nil, nil
	}
	return py.image.SectionData(name, max)
}

// Symbol returns the absolute address of a symbol of the interpreter
// image (from .dynsym, else .symtab), and false when it has none.
func (py *Python) Symbol(name string) (uint64, bool) {
	s, ok := py.image.Lookup(name)
	if !ok {
		return 0, false
	}
	return s.Value + py.Bias, true
}

// InData reports whether addr lies in the interpreter's writable data.
func (py *Python) InData(addr uint64) bool {
	for _, r := range py.Data {
		if r.Contains(addr) {
			return true
		}
	}
	return false
}

// InText reports whether addr lies in the interpreter's code.
func (py *Python) InText(addr uint64) bool {
	for _, r := range py.Text {
		if r.Contains(addr) {
			return true
		}
	}
	return false
}

// mappedFile groups the mappings of one file.
type mappedFile struct {
	key  fileKey
	path string
	maps []procfs.Mapping
	exec bool
}

// groupFiles groups file mappings by file, in order of first appearance.
func groupFiles(ms []procfs.Mapping) []*mappedFile {
	var out []*mappedFile
	idx := map[fileKey]*mappedFile{}
	for _, m := range ms {
		if !m.IsFile() {
			continue
		}
		k := keyOf(m)
		f := idx[k]
		if f == nil {
			f = &mappedFile{key: k, path: m.Path}
			idx[k] = f
			out = append(out, f)
		}
		f.maps = append(f.maps, m)
		f.exec = f.exec || m.Perms.Exec
	}
	return out
}

// exeInode returns the inode of the main program, or 0.
func exeInode(p procfs.Proc) uint64 {
	fi, err := os.Stat(p.Path("exe"))
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// maxScannedFiles bounds how many mapped files are opened looking for an
// interpreter that is neither a libpython nor the main program.
const maxScannedFiles = 512

// FindPython finds the interpreter in process pid by reading its maps and
// the mapped files, without stopping or running anything in it. It fails
// with ErrNoProcess, ErrZombie, ErrPermission or ErrNotPython (as *Error).
// When the version is not supported it returns the Python and an error
// matching ErrUnsupportedVersion.
func FindPython(pid int) (*Python, error) {
	p := procfs.New(pid)
	st, err := p.Stat()
	if err != nil {
		return nil, classify(pid, "reading stat", err)
	}
	if procfs.IsZombie(st.State) {
		return nil, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrZombie, Detail: "it has exited and awaits its parent", Hint: "nothing is left to inspect"}
	}
	return findPython(p, &imageCache{})
}

// findPython finds the interpreter; when that fails because the process
// is exiting (its mappings and files vanish under the reader), it says so
// rather than reporting whatever partial view it had.
func findPython(p procfs.Proc, cache *imageCache) (*Python, error) {
	py, err := findPythonOnce(p, cache)
	if err == nil || errors.Is(err, ErrPermission) || errors.Is(err, ErrZombie) || errors.Is(err, ErrNoProcess) {
		return py, err
	}
	if gone := exited(p); gone != nil {
		return nil, gone
	}
	return py, err
}

// exited returns the error for a process that is gone or being torn
// down, or nil when it is alive.
func exited(p procfs.Proc) error {
	st, err := p.Stat()
	switch {
	case errors.Is(err, procfs.ErrNoProcess):
		return &errs.Error{PID: p.PID, Kind: errs.NoProcess, Detail: "it exited while pyglass read it"}
	case err != nil:
		return nil
	case procfs.IsZombie(st.State) || st.Flags&procfs.FlagExiting != 0:
		return &errs.Error{PID: p.PID, Kind: errs.NotPython, Sub: ErrZombie, Detail: "it has exited (it exited while pyglass read it)", Hint: "nothing is left to inspect"}
	}
	return nil
}

func findPythonOnce(p procfs.Proc, cache *imageCache) (*Python, error) {
	pid := p.PID
	ms, err := p.Maps()
	if err != nil {
		return nil, classify(pid, "reading memory maps", err)
	}
	if len(ms) == 0 {
		// Kernel threads and exiting processes have no memory.
		if st, err := p.Stat(); err == nil && st.Flags&procfs.FlagKernThread != 0 {
			return nil, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrNotPython, Detail: "it is a kernel thread"}
		}
		return nil, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrZombie, Detail: "it has exited (its memory is already released)", Hint: "nothing is left to inspect"}
	}
	files := groupFiles(ms)
	exeIno := exeInode(p)
	var exe *mappedFile
	var order []*mappedFile
	for _, f := range files {
		if f.key.inode == exeIno && exeIno != 0 && exe == nil {
			exe = f
		}
		if isLibpython(path.Base(f.path)) {
			order = append(order, f)
		}
	}
	if exe != nil {
		order = append(order, exe)
	}
	var lastErr error
	try := func(f *mappedFile) (*image, bool) {
		img, err := cache.get(p, f.maps[0])
		if err != nil {
			if errors.Is(err, procfs.ErrNoProcess) || errors.Is(err, os.ErrPermission) {
				lastErr = err
			} else if lastErr == nil {
				lastErr = err
			}
			return nil, false
		}
		return img, img.interp
	}
	var found *mappedFile
	var img *image
	for _, f := range order {
		if i, ok := try(f); ok {
			found, img = f, i
			break
		}
	}
	if found == nil {
		n := 0
		for _, f := range files {
			if n >= maxScannedFiles {
				break
			}
			if !f.exec || f == exe || isLibpython(path.Base(f.path)) {
				continue
			}
			n++
			if i, ok := try(f); ok {
				found, img = f, i
				break
			}
		}
	}
	if found == nil {
		if lastErr != nil && (errors.Is(lastErr, procfs.ErrNoProcess) || errors.Is(lastErr, os.ErrPermission)) {
			return nil, classify(pid, "opening mapped files", lastErr)
		}
		exePath, _ := p.Exe()
		detail := fmt.Sprintf("program %s; none of its %d mapped files is a libpython or exports %s",
			exePath, len(files), strings.Join(interpSymbols, "/"))
		return nil, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrNotPython, Detail: detail, Err: lastErr,
			Hint: "pyglass needs a CPython interpreter (2.7, 3.6-3.15) in the process"}
	}
	return describe(p, ms, files, exe, found, img)
}

// describe fills a Python from the interpreter image found in file f.
func describe(p procfs.Proc, ms []procfs.Mapping, files []*mappedFile, exe, f *mappedFile, img *image) (*Python, error) {
	pid := p.PID
	py := &Python{
		Version:       img.version,
		VersionSource: img.source,
		Path:          p.TargetPath(f.path),
		OpenedAs:      img.openedAs,
		Shared:        f != exe,
		image:         img.elf,
	}
	bias, err := imageBias(p, img.elf, f, f == exe)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	py.Bias = bias
	if r, ok := img.elf.Section(".PyRuntime"); ok {
		py.Runtime = r.Add(bias)
	}
	for _, name := range []string{".data", ".bss", ".PyRuntime"} {
		if r, ok := img.elf.Section(name); ok {
			py.Data = append(py.Data, Region{r.Add(bias), f.path})
		}
	}
	for _, r := range img.elf.SegmentRanges(elf.PF_X) {
		py.Text = append(py.Text, Region{r.Add(bias), f.path})
	}
	if py.Shared && exe != nil {
		if err := addExeText(p, py, exe, img.elf.Soname); err != nil {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
	}
	py.clib = &clibOnce{p: p, files: files}
	if img.verErr != nil {
		return py, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrUnsupportedVersion, Detail: "version unknown", Err: img.verErr,
			Hint: "the interpreter's version could not be read from " + f.path}
	}
	if !py.Version.Supported() && !py.Version.Newer() {
		return py, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrUnsupportedVersion, Detail: "Python " + py.Version.String(),
			Hint: "pyglass supports CPython 2.7 and 3.6 to 3.15"}
	}
	return py, nil
}

// imageBias computes the load bias of file f's image from its mappings;
// for the main program it is cross-checked with AT_ENTRY, which wins.
func imageBias(p procfs.Proc, e *elfsym.File, f *mappedFile, isExe bool) (uint64, error) {
	em := make([]elfsym.Mapping, len(f.maps))
	for i, m := range f.maps {
		em[i] = elfsym.Mapping{Start: m.Start, End: m.End, Offset: m.Offset, Read: m.Perms.Read, Write: m.Perms.Write, Exec: m.Perms.Exec}
	}
	bias, err := e.Bias(em)
	if isExe && e.Type == elf.ET_DYN {
		if av, aerr := p.Auxv(); aerr == nil && av.Entry != 0 {
			return av.Entry - e.Entry, nil
		}
	}
	if err != nil {
		return 0, fmt.Errorf("computing load bias of %s: %w", f.path, err)
	}
	return bias, nil
}

// addExeText adds the main program's code to py.Text when it links the
// interpreter library (a python executable using libpython).
func addExeText(p procfs.Proc, py *Python, exe *mappedFile, soname string) error {
	fh, _, err := p.OpenMapping(exe.maps[0])
	if err != nil {
		return fmt.Errorf("opening main program: %w", err)
	}
	defer fh.Close()
	e, err := elfsym.Open(fh)
	if err != nil {
		return nil // not ELF: nothing to add
	}
	links := false
	for _, n := range e.Needed {
		if n == soname || isLibpython(n) {
			links = true
		}
	}
	if !links {
		return nil
	}
	bias, err := imageBias(p, e, exe, true)
	if err != nil {
		return err
	}
	for _, r := range e.SegmentRanges(elf.PF_X) {
		py.Text = append(py.Text, Region{r.Add(bias), exe.path})
	}
	return nil
}

// pthreadNames are the functions of Python.Pthread, in its order.
var pthreadNames = [4]string{"pthread_create", "pthread_detach", "pthread_attr_init", "pthread_attr_setstacksize"}

// findCLib reads the symbols of the mapped C library (and of
// libpthread, before glibc 2.34): each file is opened and parsed once.
// Pthread comes from the first of them that has all of pthreadNames;
// munmap and __errno_location from the first libc that has munmap.
func findCLib(p procfs.Proc, files []*mappedFile) (CLib, error) {
	var lib CLib
	for _, f := range files {
		base := path.Base(f.path)
		isLibc := isLibc(base)
		if !isLibc && !isLibpthread(base) {
			continue
		}
		if lib.Path != "" && lib.Pthread[0] != 0 {
			break
		}
		fh, _, err := p.OpenMapping(f.maps[0])
		if err != nil {
			if isLibc && lib.Path == "" {
				return lib, fmt.Errorf("process %d: opening C library: %w", p.PID, err)
			}
			continue
		}
		e, err := elfsym.Open(fh)
		if err != nil {
			fh.Close()
			if isLibc && lib.Path == "" {
				return lib, fmt.Errorf("process %d: reading C library %s: %w", p.PID, f.path, err)
			}
			continue
		}
		// Symbols are read on demand: look them up before closing.
		var vals [4]uint64
		all := lib.Pthread[0] == 0
		for i, name := range pthreadNames {
			if !all {
				break
			}
			s, ok := e.LookupDynamic(name)
			all = ok && s.Value != 0
			vals[i] = s.Value
		}
		var mu, el elfsym.Symbol
		var muOK, elOK bool
		if isLibc && lib.Path == "" {
			mu, muOK = e.LookupDynamic("munmap")
			el, elOK = e.LookupDynamic("__errno_location")
		}
		fh.Close()
		if !all && !muOK {
			continue
		}
		bias, err := imageBias(p, e, f, false)
		if err != nil {
			if muOK {
				return lib, fmt.Errorf("process %d: %w", p.PID, err)
			}
			continue
		}
		if all {
			for i := range vals {
				lib.Pthread[i] = vals[i] + bias
			}
		}
		if muOK {
			lib.Path, lib.Munmap = f.path, mu.Value+bias
			if elOK {
				lib.ErrnoLocation = el.Value + bias
			}
		}
	}
	return lib, nil
}
