// Package core reads an ELF core file (made by the kernel, gdb's gcore or
// another dumper) as a memory.Reader: the dumped segments from the core,
// the file-backed read-only segments the kernel did not dump from the
// mapped files named in the core's NT_FILE note. It talks to no kernel
// interface: every byte of the core is hostile input, bounds-checked.
package core

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/memory"
)

// Note types the kernel writes in a core (linux/elf.h) that debug/elf
// does not name.
const (
	ntPrstatus = 1
	ntAuxv     = 6
	ntSiginfo  = 0x53494749
	ntFile     = 0x46494c45
	ntArmTLS   = 0x401
	ntPrpsinfo = 3
)

// Bounds on what a hostile core may make pyglass allocate.
const (
	maxNotes      = 1 << 26 // bytes of PT_NOTE data
	maxFiles      = 1 << 16 // NT_FILE entries
	maxThreads    = 1 << 14
	maxDecompress = 64 << 30 // bytes written by a decompressor
)

// Thread is one thread of the dumped process (one NT_PRSTATUS note).
type Thread struct {
	TID int
	// TP is the thread pointer (fs_base on amd64, tpidr_el0 on arm64), 0
	// when unknown.
	TP uint64
	// Syscall is the system call the thread was in (amd64: orig_rax), -1
	// when it ran outside any, or when unknown; Args[0] its first argument.
	Syscall int64
	Args    [6]uint64
	// PC and SP are its instruction and stack pointers.
	PC, SP uint64
	// Signal is the signal it was stopped by (pr_cursig).
	Signal int
	// Regs are its general registers as NT_PRSTATUS holds them (struct
	// user_regs_struct on amd64, user_pt_regs on arm64), one word each.
	Regs []uint64
}

// File is one file-backed mapping (an NT_FILE entry).
type File struct {
	Start, End uint64
	Offset     uint64 // in the file, in bytes
	Path       string // as the process saw it
	Read       bool
	Write      bool
	Exec       bool
}

// Siginfo is why the core exists (NT_SIGINFO).
type Siginfo struct {
	Signo, Errno, Code int
	// PID and UID sent the signal (kill, tgkill, sigqueue: Code <= 0).
	PID, UID int
	// Addr is the faulting address (SIGSEGV, SIGBUS, SIGILL, SIGFPE).
	Addr uint64
}

// Options configure Open.
type Options struct {
	// Sysroot resolves the mapped files' paths under this directory (the
	// files of a container or chroot as the process saw them).
	Sysroot string
	// Exe overrides the file of the main program.
	Exe string
	// LibPath are directories searched, in order, for the other mapped
	// files by their base name before Sysroot (a library copied from the
	// machine the core was made on): the first whose build-id is the one
	// the core recorded (any, when it recorded none) is used.
	LibPath []string
	// Open, when set, opens a mapped file by its path under Sysroot (the
	// caller resolves it inside that root: a symbolic link in the root
	// must not lead out of it). Without it, files are opened by
	// Resolve's path.
	Open func(path string) (*os.File, error)
	// Warn receives one line per problem that does not stop the read (a
	// missing file, a build-id mismatch). Nil discards.
	Warn func(string)
}

type segment struct {
	vaddr, filesz, memsz, off uint64
	flags                     elf.ProgFlag
}

// Core is an opened core file.
type Core struct {
	Path     string
	PID      int    // the process id (NT_PRPSINFO)
	Command  string // its command line, cut to 80 bytes
	Machine  elf.Machine
	Threads  []Thread
	Files    []File
	Siginfo  *Siginfo
	Auxv     map[uint64]uint64
	Warnings []string

	f      *os.File
	tmp    string // the decompressed copy, removed by Close
	size   uint64
	segs   []segment // sorted by vaddr
	opts   Options
	opened map[string]*mapped
	// libFound are the mapped files found in a LibPath directory, and
	// where.
	libFound map[string]string
	exePath  string
}

// mapped is a file behind mappings, opened once; f nil when refused.
type mapped struct {
	f      *os.File
	reason string
}

// Open opens the core at path; a compressed one (gzip, xz, zstd, lz4) is
// decompressed into a temporary file first (Close removes it).
func Open(path string, opt Options) (*Core, error) {
	c := &Core{Path: path, opts: opt, opened: map[string]*mapped{}, libFound: map[string]string{}, Auxv: map[uint64]uint64{}}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	c.f = f
	if err := c.decompress(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.parse(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// decompressor returns a reader of the decompressed core when the file
// starts with the magic of gzip, xz, zstd or lz4 (systemd-coredump's
// formats), nil when it is not compressed.
func decompressor(r io.Reader, magic []byte) (io.Reader, error) {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(r)
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return xz.NewReader(r)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0x04, 0x22, 0x4d, 0x18}):
		return lz4.NewReader(r), nil
	}
	return nil, nil
}

// decompress replaces c.f by a decompressed copy, in a temporary file,
// when the core is compressed. At most maxDecompress bytes are written.
func (c *Core) decompress() error {
	var magic [6]byte
	if _, err := c.f.ReadAt(magic[:], 0); err != nil {
		return fmt.Errorf("%s: too short for a core: %w", c.Path, err)
	}
	zr, err := decompressor(c.f, magic[:])
	if err != nil {
		return fmt.Errorf("%s: %w", c.Path, err)
	}
	if zr == nil {
		return nil
	}
	if cl, ok := zr.(io.Closer); ok {
		defer cl.Close()
	}
	tmp, err := os.CreateTemp("", "pyglass-core-*")
	if err != nil {
		return fmt.Errorf("decompressing %s: %w", c.Path, err)
	}
	c.tmp = tmp.Name()
	n, err := io.Copy(tmp, io.LimitReader(zr, maxDecompress+1))
	if err == nil && n > maxDecompress {
		err = fmt.Errorf("more than %d bytes decompressed", int64(maxDecompress))
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("decompressing %s: %w", c.Path, err)
	}
	c.f.Close()
	c.f = tmp
	return nil
}

// Close releases the core and the mapped files.
func (c *Core) Close() error {
	for _, m := range c.opened {
		if m.f != nil {
			m.f.Close()
		}
	}
	if c.f != nil {
		c.f.Close()
	}
	if c.tmp != "" {
		os.Remove(c.tmp)
	}
	return nil
}

func (c *Core) warn(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.Warnings = append(c.Warnings, s)
	if c.opts.Warn != nil {
		c.opts.Warn(s)
	}
}

func (c *Core) parse() error {
	st, err := c.f.Stat()
	if err != nil {
		return err
	}
	c.size = uint64(st.Size())
	e, err := elf.NewFile(c.f)
	if err != nil {
		return fmt.Errorf("not an ELF file: %w", err)
	}
	if e.Type != elf.ET_CORE {
		return fmt.Errorf("an ELF %s, not a core file", e.Type)
	}
	if e.Class != elf.ELFCLASS64 || e.Data != elf.ELFDATA2LSB || (e.Machine != elf.EM_X86_64 && e.Machine != elf.EM_AARCH64) {
		return fmt.Errorf("a %s %s core: pyglass reads 64-bit little-endian x86-64 and arm64 cores", e.Class, e.Machine)
	}
	c.Machine = e.Machine
	var notes [][]byte
	total := uint64(0)
	for _, p := range e.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			if p.Vaddr+p.Memsz < p.Vaddr || p.Filesz > p.Memsz && p.Memsz == 0 {
				continue // wraps around: no memory of a process
			}
			if p.Off > c.size || p.Filesz > c.size-p.Off {
				c.warn("core segment at %#x is truncated (the core is cut short)", p.Vaddr)
				fs := uint64(0)
				if p.Off < c.size {
					fs = c.size - p.Off
				}
				p.Filesz = min(p.Filesz, fs)
			}
			c.segs = append(c.segs, segment{p.Vaddr, min(p.Filesz, p.Memsz), p.Memsz, p.Off, p.Flags})
		case elf.PT_NOTE:
			total += p.Filesz
			if total > maxNotes || p.Off > c.size || p.Filesz > c.size-p.Off {
				return errors.New("its notes are larger than the file or than pyglass reads")
			}
			b := make([]byte, p.Filesz)
			if _, err := c.f.ReadAt(b, int64(p.Off)); err != nil {
				return fmt.Errorf("reading notes: %w", err)
			}
			notes = append(notes, b)
		}
	}
	sort.Slice(c.segs, func(i, j int) bool { return c.segs[i].vaddr < c.segs[j].vaddr })
	for _, b := range notes {
		c.parseNotes(b)
	}
	if len(c.Threads) == 0 {
		return errors.New("it has no thread (no NT_PRSTATUS note)")
	}
	if c.PID <= 0 { // no NT_PRPSINFO: the kernel writes the main thread first
		c.PID = c.Threads[0].TID
	}
	for i := range c.Files {
		f := &c.Files[i]
		if s := c.segment(f.Start); s != nil && s.vaddr == f.Start {
			f.Read, f.Write, f.Exec = s.flags&elf.PF_R != 0, s.flags&elf.PF_W != 0, s.flags&elf.PF_X != 0
		}
	}
	return nil
}

// parseNotes reads the notes of one PT_NOTE segment.
func (c *Core) parseNotes(b []byte) {
	le := binary.LittleEndian
	align4 := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:])), le.Uint32(b[8:])
		b = b[12:]
		if align4(namesz) > uint64(len(b)) {
			return
		}
		name := strings.TrimRight(string(b[:namesz]), "\x00")
		b = b[align4(namesz):]
		if align4(descsz) > uint64(len(b)) {
			if descsz > uint64(len(b)) {
				return
			}
		}
		desc := b[:descsz]
		b = b[min(align4(descsz), uint64(len(b))):]
		if name != "CORE" && name != "LINUX" {
			continue
		}
		switch typ {
		case ntPrstatus:
			c.prstatus(desc)
		case ntPrpsinfo:
			if len(desc) >= 136 {
				c.PID = int(int32(le.Uint32(desc[24:])))
				c.Command = strings.TrimRight(string(desc[56:136]), "\x00 ")
			}
		case ntSiginfo:
			if len(desc) >= 24 {
				si := &Siginfo{Signo: int(int32(le.Uint32(desc))), Errno: int(int32(le.Uint32(desc[4:]))), Code: int(int32(le.Uint32(desc[8:])))}
				if si.Code <= 0 { // sent by a process
					si.PID, si.UID = int(int32(le.Uint32(desc[16:]))), int(le.Uint32(desc[20:]))
				} else {
					si.Addr = le.Uint64(desc[16:])
				}
				c.Siginfo = si
			}
		case ntAuxv:
			for i := 0; i+16 <= len(desc); i += 16 {
				c.Auxv[le.Uint64(desc[i:])] = le.Uint64(desc[i+8:])
			}
		case ntFile:
			c.files(desc)
		case ntArmTLS:
			if len(desc) >= 8 && len(c.Threads) > 0 {
				c.Threads[len(c.Threads)-1].TP = le.Uint64(desc)
			}
		}
	}
}

// prstatus reads one thread's struct elf_prstatus.
func (c *Core) prstatus(d []byte) {
	le := binary.LittleEndian
	const regsOff = 112 // after siginfo, cursig, sigpend, sighold, pids, times
	nregs := 27         // x86-64 user_regs_struct
	if c.Machine == elf.EM_AARCH64 {
		nregs = 34 // x0-x30, sp, pc, pstate
	}
	if len(d) < regsOff+nregs*8 || len(c.Threads) >= maxThreads {
		return
	}
	reg := func(i int) uint64 { return le.Uint64(d[regsOff+8*i:]) }
	t := Thread{TID: int(int32(le.Uint32(d[32:]))), Signal: int(le.Uint16(d[12:])), Syscall: -1, Regs: make([]uint64, nregs)}
	for i := range t.Regs {
		t.Regs[i] = reg(i)
	}
	if c.Machine == elf.EM_X86_64 {
		t.TP, t.PC, t.SP = reg(21), reg(16), reg(19)
		t.Syscall = int64(reg(15))
		t.Args = [6]uint64{reg(14), reg(13), reg(12), reg(7), reg(9), reg(8)}
		if t.Syscall < 0 {
			t.Syscall = -1
		}
	} else {
		t.PC, t.SP = reg(32), reg(31)
	}
	c.Threads = append(c.Threads, t)
}

// files reads the NT_FILE note: the file-backed mappings.
func (c *Core) files(d []byte) {
	le := binary.LittleEndian
	if len(d) < 16 {
		return
	}
	count, page := le.Uint64(d), le.Uint64(d[8:])
	if count > maxFiles || page == 0 || page > 1<<30 || 16+count*24 > uint64(len(d)) {
		return
	}
	names := strings.Split(string(d[16+count*24:]), "\x00")
	if uint64(len(names)) < count {
		return
	}
	for i := uint64(0); i < count; i++ {
		e := d[16+i*24:]
		start, end, off := le.Uint64(e), le.Uint64(e[8:]), le.Uint64(e[16:])
		if end < start || off > (1<<63)/page {
			continue
		}
		c.Files = append(c.Files, File{Start: start, End: end, Offset: off * page, Path: names[i]})
	}
}

// segment returns the core segment holding addr, or nil.
func (c *Core) segment(addr uint64) *segment {
	i := sort.Search(len(c.segs), func(i int) bool { return c.segs[i].vaddr+c.segs[i].memsz > addr })
	if i < len(c.segs) && c.segs[i].vaddr <= addr {
		return &c.segs[i]
	}
	return nil
}

// vaddrOr returns the segment's start, or addr for no segment.
func (s *segment) vaddrOr(addr uint64) uint64 {
	if s == nil {
		return addr
	}
	return s.vaddr
}

// nextSegment returns the start of the first segment above addr, 0 when
// there is none.
func (c *Core) nextSegment(addr uint64) uint64 {
	i := sort.Search(len(c.segs), func(i int) bool { return c.segs[i].vaddr > addr })
	if i < len(c.segs) {
		return c.segs[i].vaddr
	}
	return 0
}

// fileAt returns the NT_FILE mapping holding addr, or nil.
func (c *Core) fileAt(addr uint64) *File {
	for i := range c.Files {
		if f := &c.Files[i]; addr >= f.Start && addr < f.End {
			return f
		}
	}
	return nil
}

// ReadAt reads the target's memory at addr as it was when the core was
// made: from the core, else (a segment the kernel did not dump) from the
// mapped file, when it could be opened and matches the core.
func (c *Core) ReadAt(p []byte, addr uint64) (int, error) {
	n := 0
	for n < len(p) {
		a := addr + uint64(n)
		s := c.segment(a)
		chunk := uint64(len(p) - n)
		if s != nil {
			chunk = min(chunk, s.memsz-(a-s.vaddr))
		} else if next := c.nextSegment(a); next != 0 {
			chunk = min(chunk, next-a)
		}
		if in := a - s.vaddrOr(a); s != nil && in < s.filesz {
			chunk = min(chunk, s.filesz-in)
			m, err := c.f.ReadAt(p[n:n+int(chunk)], int64(s.off+in))
			n += m
			if err != nil {
				return n, fmt.Errorf("%w: reading the core at %#x: %v", memory.ErrShortRead, a, err)
			}
			continue
		}
		// Not dumped (gcore leaves out read-only file mappings whole, the
		// kernel dumps only their first page): read the mapped file.
		f := c.fileAt(a)
		if f == nil {
			return n, fmt.Errorf("%w: %#x is not in the core", memory.ErrFault, a)
		}
		chunk = min(chunk, f.End-a)
		mf := c.open(f.Path)
		if mf.f == nil {
			return n, fmt.Errorf("%w: %#x is in %s, which was not dumped (%s)", memory.ErrFault, a, f.Path, mf.reason)
		}
		m, err := mf.f.ReadAt(p[n:n+int(chunk)], int64(f.Offset+(a-f.Start)))
		n += m
		if m < int(chunk) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("%w: reading %s: %v", memory.ErrShortRead, f.Path, err)
		}
	}
	return n, nil
}

// Resolve returns the path by which pyglass reads the mapped file path:
// --exe for the main program, the file found in a --lib-path directory
// once opened, else path under the sysroot.
func (c *Core) Resolve(path string) string {
	if c.opts.Exe != "" && path == c.ExePath() {
		return c.opts.Exe
	}
	if p, ok := c.libFound[path]; ok {
		return p
	}
	if c.opts.Sysroot != "" {
		return filepath.Join(c.opts.Sysroot, filepath.Clean("/"+path))
	}
	return path
}

// ExePath is the main program's path as the process saw it: the file
// mapped at AT_PHDR (the first file mapped otherwise).
func (c *Core) ExePath() string {
	if c.exePath != "" {
		return c.exePath
	}
	if phdr, ok := c.Auxv[3]; ok { // AT_PHDR
		if f := c.fileAt(phdr); f != nil {
			c.exePath = f.Path
		}
	}
	if c.exePath == "" && len(c.Files) > 0 {
		c.exePath = c.Files[0].Path
	}
	return c.exePath
}

// CheckFiles opens every mapped file once, so that a missing file or one
// whose build-id differs from the core's is warned about at once, not at
// the first read that needs it.
func (c *Core) CheckFiles() {
	for _, f := range c.Files {
		c.open(f.Path)
	}
}

// OpenFile opens a mapped file as pyglass reads it (Resolve), after
// checking that its build-id is the one the core recorded for it: a
// different file (the program was rebuilt or upgraded since) is refused
// with a warning, never silently used.
func (c *Core) OpenFile(path string) (*os.File, error) {
	m := c.open(path)
	if m.f == nil {
		return nil, errors.New(m.reason)
	}
	return m.f, nil
}

func (c *Core) open(path string) *mapped {
	if m, ok := c.opened[path]; ok {
		return m
	}
	m := &mapped{}
	c.opened[path] = m
	if m.f = c.fromLibPath(path); m.f != nil {
		return m
	}
	real := c.Resolve(path)
	var f *os.File
	var err error
	switch {
	case c.opts.Open != nil && real != c.opts.Exe:
		f, err = c.opts.Open(path)
	default:
		f, err = openRegular(real)
	}
	if err != nil {
		m.reason = err.Error() // names the file
		c.warn("%s: what the core lacks of it is unreadable (--sysroot DIR, --lib-path DIR[:DIR] or --exe PATH tell where the files are)", m.reason)
		return m
	}
	want := c.BuildID(path)
	got := elfsym.BuildID(f)
	if want != "" && got != want {
		f.Close()
		m.reason = fmt.Sprintf("%s is not the file the process mapped: build-id %s, the core says %s", real, orNone(got), want)
		c.warn("%s; refused", m.reason)
		return m
	}
	m.f = f
	return m
}

// fromLibPath opens the file named as path's base name (without the
// kernel's " (deleted)") in the first of the LibPath directories that
// has one with the build-id the core recorded for path (any, with a
// warning, when it recorded none: gcore's cores); nil when none has (a
// file with another build-id is warned about and passed over). The main
// program is not looked for there (--exe names it).
func (c *Core) fromLibPath(path string) *os.File {
	if len(c.opts.LibPath) == 0 || path == c.ExePath() {
		return nil
	}
	// The kernel names a file replaced or removed since it was mapped
	// "PATH (deleted)": a copy of it has the name without the mark.
	name := filepath.Base(strings.TrimSuffix(path, " (deleted)"))
	if name == "." || name == ".." || name == "/" {
		return nil
	}
	want := c.BuildID(path)
	for _, dir := range c.opts.LibPath {
		if dir == "" {
			continue
		}
		cand := filepath.Join(dir, name)
		f, err := openRegular(cand)
		if err != nil {
			continue
		}
		got := elfsym.BuildID(f)
		if want == "" || got == want {
			if want == "" {
				c.warn("%s (--lib-path) used for %s unchecked: the core did not record its build-id", cand, path)
			}
			c.libFound[path] = cand
			return f
		}
		f.Close()
		c.warn("%s (--lib-path) is not the file the process mapped as %s: build-id %s, the core says %s; passed over", cand, path, orNone(got), want)
	}
	return nil
}

// openRegular opens path when it is a regular file (never a FIFO or a
// device a hostile core names, which could block or never end).
func openRegular(path string) (*os.File, error) {
	if st, err := os.Stat(path); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return os.Open(path)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// BuildID returns the GNU build-id, in hex, of the ELF file mapped from
// path, read from its first page as dumped in the core ("" when the core
// does not hold it).
func (c *Core) BuildID(path string) string {
	for _, f := range c.Files {
		if f.Path != path || f.Offset != 0 {
			continue
		}
		s := c.segment(f.Start)
		if s == nil || s.filesz == 0 {
			continue
		}
		n := min(s.filesz, f.End-f.Start, 1<<16)
		b := make([]byte, n)
		if _, err := c.f.ReadAt(b, int64(s.off+(f.Start-s.vaddr))); err != nil {
			continue
		}
		if id := elfsym.BuildID(bytes.NewReader(b)); id != "" {
			return id
		}
	}
	return ""
}
