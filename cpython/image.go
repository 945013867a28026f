package cpython

// Image says where the interpreter lives in the target; another package
// (internal/pyproc) fills it from /proc and ELF.
type Image struct {
	// Major, Minor and Micro are the interpreter's version.
	Major, Minor, Micro int
	// Symbol returns the absolute address in the target of a symbol of
	// the interpreter image, from .dynsym or .symtab. It may be nil, and
	// what it returns may lie (a stale or foreign symbol): every address
	// found through it is validated before use.
	Symbol func(name string) (uint64, bool)
	// PyRuntime is [start,end) of the .PyRuntime section (3.10+),
	// absolute; zero if none.
	PyRuntime [2]uint64
	// Data lists [start,end) of the interpreter image's writable data
	// (.data, .bss), absolute, for scanning when symbols are missing.
	Data [][2]uint64
}

// symbol looks name up, tolerating a nil Symbol.
func (img *Image) symbol(name string) (uint64, bool) {
	if img.Symbol == nil {
		return 0, false
	}
	a, ok := img.Symbol(name)
	return a, ok && a != 0
}

// RuntimeAddr returns the address of _PyRuntime (3.7+): the symbol when
// present, else the start of the .PyRuntime section (3.10+). It reports
// false when neither is known (2.7, 3.6, or a stripped 3.7–3.9).
func (img *Image) RuntimeAddr() (uint64, bool) {
	if img.Major == 2 || (img.Major == 3 && img.Minor < 7) {
		return 0, false
	}
	if a, ok := img.symbol("_PyRuntime"); ok {
		return a, true
	}
	if img.PyRuntime[0] != 0 {
		return img.PyRuntime[0], true
	}
	return 0, false
}
