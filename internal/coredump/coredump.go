// Package coredump writes a standard ELF core file of a live process (what
// `pyglass dump` does, like gdb's gcore): its threads are paused only
// while their registers and the memory are copied, then released, and the
// process runs on untraced. The core is read by pyglass (target/core),
// gdb and other tools.
package coredump

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/target"
	"github.com/pyglass/pyglass/target/live"
)

// Result says what Write wrote.
type Result struct {
	Path    string
	Bytes   int64         // the size of the core
	Threads int           // threads written
	Paused  time.Duration // how long the threads were held
}

// ErrNoSpace is returned when the core would not fit on its file system
// with a margin to spare.
var ErrNoSpace = errors.New("not enough free disk space")

// spareBytes is what Write leaves free on the file system.
const spareBytes = 64 << 20

const pageSize = 4096

// region is one mapping of the process and how much of it goes in the core.
type region struct {
	procfs.Mapping
	dump bool // the whole mapping, else only its first page (an ELF header) or nothing
	head bool
}

func (r region) size() uint64 {
	switch {
	case r.dump:
		return r.End - r.Start
	case r.head:
		return min(pageSize, r.End-r.Start)
	}
	return 0
}

// Write writes the core of process pid to path (which must not exist).
func Write(pid int, path string) (res Result, err error) {
	p := procfs.New(pid)
	st, err := p.Status()
	if err != nil {
		return res, err
	}
	maps, err := p.Maps()
	if err != nil {
		return res, err
	}
	anon := anonymousKB(p)
	var regions []region
	var total uint64
	for _, m := range maps {
		r := region{Mapping: m}
		switch {
		case !m.Perms.Read || m.Path == "[vvar]" || m.Path == "[vvar_vclock]":
		case !m.IsFile() || m.Perms.Write || anon[m.Start] > 0:
			r.dump = true // anonymous, writable, or written to (relocations)
		case m.Offset == 0:
			r.head = true // the ELF header and build-id note
		}
		regions = append(regions, r)
		total += r.size()
	}
	auxv, _ := os.ReadFile(p.Path("auxv"))
	cmdline, _ := p.Cmdline()

	dir := filepath.Dir(path)
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return res, fmt.Errorf("checking free space in %s: %w", dir, err)
	}
	if free := fs.Bavail * uint64(fs.Bsize); total+spareBytes > free {
		return res, fmt.Errorf("%w in %s: the core needs %d MiB, %d MiB are free (%d MiB kept spare)", ErrNoSpace, dir, total>>20, free>>20, spareBytes>>20)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	mem, err := live.Open(pid)
	if err != nil {
		return res, err
	}
	defer mem.Close()

	frozen, err := ptrace.Freeze(pid)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	defer frozen.Thaw()
	regs := frozen.RawRegs()
	tids := append([]int(nil), frozen.Tids...)
	// The main thread first, as the kernel writes it when it dumps.
	for i, tid := range tids {
		if tid == pid {
			tids[0], tids[i] = tids[i], tids[0]
		}
	}
	notes := buildNotes(pid, st, tids, regs, auxv, cmdline, regions)
	// Layout: ELF header, program headers (the notes, then one PT_LOAD per
	// mapping), the notes, then each segment page-aligned.
	nph := 1 + len(regions)
	off := uint64(64 + 56*nph)
	noteOff := off
	off = align(off+uint64(len(notes)), pageSize)
	var hdr bytes.Buffer
	le := binary.LittleEndian
	eh := elf.Header64{Type: uint16(elf.ET_CORE), Machine: uint16(target.HostMachine()), Version: 1,
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(nph)}
	copy(eh.Ident[:], elf.ELFMAG)
	eh.Ident[elf.EI_CLASS], eh.Ident[elf.EI_DATA], eh.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&hdr, le, eh)
	binary.Write(&hdr, le, elf.Prog64{Type: uint32(elf.PT_NOTE), Off: noteOff, Filesz: uint64(len(notes)), Align: 4})
	offs := make([]uint64, len(regions))
	for i, r := range regions {
		var flags elf.ProgFlag
		if r.Perms.Read {
			flags |= elf.PF_R
		}
		if r.Perms.Write {
			flags |= elf.PF_W
		}
		if r.Perms.Exec {
			flags |= elf.PF_X
		}
		offs[i] = off
		binary.Write(&hdr, le, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(flags), Off: off, Vaddr: r.Start,
			Filesz: r.size(), Memsz: r.End - r.Start, Align: pageSize})
		off = align(off+r.size(), pageSize)
	}
	if _, err := f.WriteAt(hdr.Bytes(), 0); err != nil {
		return res, err
	}
	if _, err := f.WriteAt(notes, int64(noteOff)); err != nil {
		return res, err
	}
	buf := make([]byte, 1<<20)
	for i, r := range regions {
		for a := r.Start; a < r.Start+r.size(); {
			n := min(uint64(len(buf)), r.Start+r.size()-a)
			got, _ := mem.ReadAt(buf[:n], a)
			if got < int(n) {
				// An unreadable page (a guard page, a file truncated
				// under a mapping) stays zero in the core.
				clear(buf[got:n])
			}
			if _, err := f.WriteAt(buf[:n], int64(offs[i]+(a-r.Start))); err != nil {
				return res, err
			}
			a += n
		}
	}
	frozen.Thaw()
	res.Paused = time.Since(t0)
	if err := f.Truncate(int64(off)); err != nil {
		return res, err
	}
	return Result{Path: path, Bytes: int64(off), Threads: len(tids), Paused: res.Paused}, nil
}

func align(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

// anonymousKB reads /proc/PID/smaps: how much of each mapping (by start)
// is private anonymous memory (a file mapping written to: relocations).
func anonymousKB(p procfs.Proc) map[uint64]uint64 {
	out := map[uint64]uint64{}
	f, err := os.Open(p.Path("smaps"))
	if err != nil {
		return out
	}
	defer f.Close()
	var cur uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if k, v, ok := strings.Cut(l, ":"); ok && k == "Anonymous" {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			out[cur] = n
			continue
		}
		if lo, _, ok := strings.Cut(l, "-"); ok && !strings.Contains(lo, " ") {
			if a, err := strconv.ParseUint(lo, 16, 64); err == nil {
				cur = a
			}
		}
	}
	return out
}

// note appends one ELF note named "CORE".
func note(b *bytes.Buffer, typ uint32, desc []byte) {
	le := binary.LittleEndian
	binary.Write(b, le, [3]uint32{5, uint32(len(desc)), typ})
	b.WriteString("CORE\x00\x00\x00\x00")
	b.Write(desc)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// buildNotes writes the notes the kernel writes: NT_PRPSINFO, then per
// thread NT_PRSTATUS, then NT_SIGINFO (no signal: made on request),
// NT_AUXV and NT_FILE.
func buildNotes(pid int, st *procfs.Status, tids []int, regs map[int][]byte, auxv []byte, cmdline []string, regions []region) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	ps := make([]byte, 136)
	ps[1] = 'S'
	le.PutUint32(ps[16:], uint32(st.Uid[1]))
	le.PutUint32(ps[20:], uint32(st.Gid[1]))
	le.PutUint32(ps[24:], uint32(pid))
	le.PutUint32(ps[28:], uint32(st.PPid))
	copy(ps[40:55], st.Name)
	copy(ps[56:135], strings.Join(cmdline, " "))
	note(&b, 3, ps)
	nregs := 216
	if target.HostMachine() == elf.EM_AARCH64 {
		nregs = 272
	}
	for _, tid := range tids {
		pr := make([]byte, 112+nregs+8)
		le.PutUint32(pr[32:], uint32(tid))
		le.PutUint32(pr[36:], uint32(st.PPid))
		copy(pr[112:112+nregs], regs[tid])
		note(&b, 1, pr)
	}
	note(&b, 0x53494749, make([]byte, 128))
	if len(auxv) > 0 {
		note(&b, 6, auxv)
	}
	var files, names bytes.Buffer
	n := 0
	for _, r := range regions {
		if !r.IsFile() {
			continue
		}
		binary.Write(&files, le, [3]uint64{r.Start, r.End, r.Offset / pageSize})
		names.WriteString(r.Path + "\x00")
		n++
	}
	var nf bytes.Buffer
	binary.Write(&nf, le, [2]uint64{uint64(n), pageSize})
	nf.Write(files.Bytes())
	nf.Write(names.Bytes())
	note(&b, 0x46494c45, nf.Bytes())
	return b.Bytes()
}
