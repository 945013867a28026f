package pyproc

import (
	"debug/elf"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/errs"
)

// MappedFile is one file mapped in a process that is not read through
// /proc (a core file): its path as the process saw it and its mappings.
type MappedFile struct {
	Path string
	Maps []elfsym.Mapping
}

// FindPythonIn finds the interpreter among the mapped files of a process
// known only by its mappings (a core file), without /proc: libpython
// first, then the main program (exe), then the other executable files.
// open opens a mapped file by its path as the process saw it; entry is the
// program's AT_ENTRY (0 when unknown), which gives the main program's
// load bias. Files that cannot be opened are skipped; when none holds an
// interpreter, the error names the last reason.
func FindPythonIn(pid int, files []MappedFile, exe string, entry uint64, open func(string) (io.ReaderAt, error)) (*Python, error) {
	var order []*MappedFile
	for i := range files {
		if isLibpython(path.Base(files[i].Path)) {
			order = append(order, &files[i])
		}
	}
	for i := range files {
		if files[i].Path == exe {
			order = append(order, &files[i])
		}
	}
	for i := range files {
		f := &files[i]
		if f.Path != exe && !isLibpython(path.Base(f.Path)) && len(order) < maxScannedFiles && execMapped(f) {
			order = append(order, f)
		}
	}
	var lastErr error
	for _, f := range order {
		r, err := open(f.Path)
		if err != nil {
			lastErr = err
			continue
		}
		e, err := elfsym.Open(r)
		if err != nil {
			continue
		}
		if _, rt := e.Section(".PyRuntime"); !rt && !e.Defines(interpSymbols...) {
			continue
		}
		if err := e.LoadSymtab(); err != nil {
			return nil, fmt.Errorf("loading symbols of %s: %w", f.Path, err)
		}
		py := &Python{Path: f.Path, OpenedAs: f.Path, Shared: f.Path != exe, image: e}
		var verErr error
		py.Version, py.VersionSource, verErr = fileVersion(e, f.Path)
		bias, err := e.Bias(f.Maps)
		if f.Path == exe && e.Type == elf.ET_DYN && entry != 0 {
			bias, err = entry-e.Entry, nil
		}
		if err != nil {
			return nil, fmt.Errorf("computing load bias of %s: %w", f.Path, err)
		}
		py.Bias = bias
		if r, ok := e.Section(".PyRuntime"); ok {
			py.Runtime = r.Add(bias)
		}
		for _, name := range []string{".data", ".bss", ".PyRuntime"} {
			if r, ok := e.Section(name); ok {
				py.Data = append(py.Data, Region{r.Add(bias), f.Path})
			}
		}
		for _, r := range e.SegmentRanges(elf.PF_X) {
			py.Text = append(py.Text, Region{r.Add(bias), f.Path})
		}
		switch {
		case verErr != nil:
			return py, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrUnsupportedVersion, Detail: "version unknown", Err: verErr,
				Hint: "the interpreter's version could not be read from " + f.Path}
		case !py.Version.Supported() && !py.Version.Newer():
			return py, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrUnsupportedVersion, Detail: "Python " + py.Version.String(),
				Hint: "pyglass supports CPython 2.7 and 3.6 to 3.15"}
		}
		return py, nil
	}
	names := make([]string, 0, len(order))
	for _, f := range order {
		if len(names) == 4 {
			names = append(names, fmt.Sprintf("and %d more", len(order)-4))
			break
		}
		names = append(names, f.Path)
	}
	detail := fmt.Sprintf("program %s; none of its mapped files (%s) is a libpython or exports %s",
		exe, strings.Join(names, ", "), strings.Join(interpSymbols, "/"))
	if lastErr != nil {
		detail += "; " + lastErr.Error()
	}
	return nil, &errs.Error{PID: pid, Kind: errs.NotPython, Sub: ErrNotPython, Detail: detail,
		Hint: "pyglass needs the core's libpython or python executable: give --sysroot DIR or --exe PATH"}
}

func execMapped(f *MappedFile) bool {
	for _, m := range f.Maps {
		if m.Exec {
			return true
		}
	}
	return false
}
