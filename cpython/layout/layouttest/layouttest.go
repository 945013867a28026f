// Package layouttest holds helpers for tests that read live Python
// processes: a /proc/PID/mem reader and an ELF look-up of the
// interpreter image. It is for tests only; the real process access lives
// elsewhere.
package layouttest

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Mem reads a process's memory through /proc/PID/mem.
type Mem struct{ f *os.File }

// OpenMem opens /proc/PID/mem.
func OpenMem(pid int) (*Mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, fmt.Errorf("opening memory: %w", err)
	}
	return &Mem{f}, nil
}

// ReadAt implements memory.Reader.
func (m *Mem) ReadAt(p []byte, addr uint64) (int, error) {
	if addr > 1<<62 {
		return 0, fmt.Errorf("address %#x out of range", addr)
	}
	return m.f.ReadAt(p, int64(addr))
}

// Close closes the file.
func (m *Mem) Close() error { return m.f.Close() }

// Image is the interpreter image of a process: libpython when mapped,
// else the main executable.
type Image struct {
	Path     string               // as the process sees it
	Bias     uint64               // load bias
	Symbols  map[string]uint64    // absolute addresses, .symtab and .dynsym
	Sections map[string][2]uint64 // absolute [start,end) of allocated sections
}

// FindImage locates the interpreter image of pid.
func FindImage(pid int) (*Image, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("opening maps: %w", err)
	}
	defer f.Close()
	type mapping struct {
		start, off uint64
		path       string
	}
	var maps []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 {
			continue
		}
		rng := strings.SplitN(fs[0], "-", 2)
		start, _ := strconv.ParseUint(rng[0], 16, 64)
		off, _ := strconv.ParseUint(fs[2], 16, 64)
		maps = append(maps, mapping{start, off, fs[5]})
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	path := exe
	for _, m := range maps {
		if strings.HasPrefix(filepath.Base(m.path), "libpython") {
			path = m.path
			break
		}
	}
	var start uint64
	found := false
	for _, m := range maps {
		if m.path == path && m.off == 0 {
			start, found = m.start, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("no mapping of %s at offset 0", path)
	}
	file := fmt.Sprintf("/proc/%d/root%s", pid, path)
	if path == exe {
		file = fmt.Sprintf("/proc/%d/exe", pid)
	}
	e, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", file, err)
	}
	defer e.Close()
	img := &Image{Path: path, Symbols: map[string]uint64{}, Sections: map[string][2]uint64{}}
	if e.Type == elf.ET_DYN {
		var first uint64 = 1 << 63
		for _, p := range e.Progs {
			if p.Type == elf.PT_LOAD && p.Vaddr < first {
				first = p.Vaddr
			}
		}
		img.Bias = start - first&^0xfff
	}
	for _, get := range []func() ([]elf.Symbol, error){e.Symbols, e.DynamicSymbols} {
		syms, _ := get()
		for _, s := range syms {
			if s.Section == elf.SHN_UNDEF || s.Value == 0 {
				continue
			}
			if _, ok := img.Symbols[s.Name]; !ok {
				img.Symbols[s.Name] = s.Value + img.Bias
			}
		}
	}
	for _, s := range e.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Addr != 0 {
			img.Sections[s.Name] = [2]uint64{s.Addr + img.Bias, s.Addr + img.Bias + s.Size}
		}
	}
	return img, nil
}

// TIDs lists /proc/PID/task.
func TIDs(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out, nil
}
