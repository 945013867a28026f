package inject

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/target/live"
	"golang.org/x/sys/unix"
)

// A code cave is the tail of the last page of an executable, private,
// file-backed mapping past the end of its ELF segment (p_vaddr+p_filesz up
// to the page end). The loader maps whole pages, so these bytes are
// present and executable, but they belong to no section: no code runs or
// reads them. pyglass writes its bootstrap there (the write through
// /proc/PID/mem gives the process a private copy of the page), so that the
// first instruction the borrowed thread runs with changed registers is
// already code that restores the thread by itself if pyglass vanishes.
// The original bytes are put back once the thread has left the cave.
type cave struct {
	addr, size uint64
	file       string
	orig       []byte // original bytes of [addr, addr+size)
}

// caveMagic, followed by a bootStamp, ends every bootstrap written to a
// cave: a cave that still holds it (a pyglass died before putting the
// bytes back) is reused only when no thread can still be in it.
var caveMagic = []byte("pyglass-cave\x00\x00\x00\x01")

// isText reports whether m is mapped as a shared object's or program's
// code is: read and execute, private, from a file.
func isText(m procfs.Mapping) bool {
	return m.Perms == procfs.Perms{Read: true, Exec: true} && m.IsFile()
}

// pyglassCode lists where a thread may be running code of an earlier
// injection that is restoring itself (its pyglass died or gave up): the
// cave regions of all executable file mappings and all anonymous
// executable mappings. Such a thread is never borrowed.
func pyglassCode(mem *live.Process, maps []procfs.Mapping, page uint64) [][2]uint64 {
	var out [][2]uint64
	for _, m := range maps {
		if !m.Perms.Exec {
			continue
		}
		if !strings.HasPrefix(m.Path, "/") {
			out = append(out, [2]uint64{m.Start, m.End})
			continue
		}
		if c := caveIn(mem, maps, m, page); c != nil {
			out = append(out, [2]uint64{c.addr, c.addr + c.size})
		}
	}
	return out
}

// findCave returns a cave of at least need bytes (16-byte aligned start)
// among maps (the job's, procfs.Maps), preferring the interpreter's own
// mappings and never overlapping a range of taken. It returns nil when
// there is none; the original bytes are read into the result.
func findCave(mem *live.Process, pid int, maps []procfs.Mapping, need uint64, prefer, taken [][2]uint64, page uint64) *cave {
	var order []procfs.Mapping
	isPreferred := func(m procfs.Mapping) bool {
		for _, r := range prefer {
			if m.Start >= r[0] && m.Start < r[1] {
				return true
			}
		}
		return false
	}
	for _, pass := range []bool{true, false} {
		for _, m := range maps {
			if isText(m) && isPreferred(m) == pass {
				order = append(order, m)
			}
		}
	}
	for i, m := range order {
		if i >= 64 {
			break
		}
		c := caveIn(mem, maps, m, page)
		if c == nil {
			continue
		}
		tail := make([]byte, m.End-c.addr)
		if _, err := mem.ReadAt(tail, c.addr); err != nil {
			continue
		}
		// Bootstraps left by a pyglass that died before putting the bytes
		// back: the bytes before a recent one (up to maxBoot) are taken.
		const maxBoot = 2048
		busy := append([][2]uint64(nil), taken...)
		dirty := false
		for off := 0; off < len(tail); {
			i := bytes.Index(tail[off:], caveMagic)
			if i < 0 {
				break
			}
			at := c.addr + uint64(off+i)
			dirty = true
			if !caveStale(pid, tail[off+i+len(caveMagic):], c.addr, m.End) {
				busy = append(busy, [2]uint64{at - min(at-c.addr, maxBoot), at + uint64(len(caveMagic)) + 8})
			}
			off += i + 1
		}
		for at := (c.addr + 15) &^ 15; at+need <= m.End; at += (need + 15) &^ 15 {
			free := true
			for _, b := range busy {
				if at < b[1] && at+need > b[0] {
					free = false
				}
			}
			if !free {
				continue
			}
			c := &cave{addr: at, size: need, file: m.Path, orig: make([]byte, need)}
			copy(c.orig, tail[at-(m.End-uint64(len(tail))):])
			if dirty {
				fileBytes(pid, m, c.addr, c.orig)
			}
			return c
		}
	}
	return nil
}

// caveStaleAfter is how old a left bootstrap must be to be overwritten (a
// bootstrap is done within about 250 ms).
var caveStaleAfter = 2 * time.Second

// caveStale reports whether a bootstrap left in a cave, stamped by
// bootStamp, is old enough (a bootstrap finishes within about 250 ms) and
// no thread of pid is blocked in a system call made from [lo, hi).
func caveStale(pid int, rest []byte, lo, hi uint64) bool {
	if len(rest) < 8 {
		return false
	}
	age := bootStamp() - binary.LittleEndian.Uint64(rest)
	if int64(age) < int64(caveStaleAfter) {
		return false
	}
	p := procfs.New(pid)
	tids, err := p.TaskIDs()
	if err != nil {
		return false
	}
	for _, tid := range tids {
		sc, err := p.TaskSyscall(tid)
		if err == nil && !sc.Running && sc.PC >= lo && sc.PC < hi {
			return false
		}
	}
	return true
}

// bootStamp is the time written after caveMagic (CLOCK_BOOTTIME, ns).
func bootStamp() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// fileBytes replaces b (the bytes at addr in mapping m) with the file's
// own bytes, when the file can be read (opened as the target sees it,
// inside its root, and checked to be the mapped file: procfs.OpenMapping);
// otherwise b is left as it is (the cave then goes back to the old
// bootstrap, which is never run).
func fileBytes(pid int, m procfs.Mapping, addr uint64, b []byte) {
	f, _, err := procfs.New(pid).OpenMapping(m)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, len(b))
	n, err := f.ReadAt(buf, int64(m.Offset+(addr-m.Start)))
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	clear(buf[n:]) // past the end of the file the page holds zeros
	copy(b, buf)
}

// caveIn finds the segment end inside the executable mapping m from the
// ELF program headers in memory (the header is at the start of the
// file's offset-0 mapping). Only 64-bit little-endian ELF is handled.
func caveIn(mem *live.Process, maps []procfs.Mapping, m procfs.Mapping, page uint64) *cave {
	var hdrAt uint64
	for _, h := range maps {
		if h.Path == m.Path && h.Inode == m.Inode && h.Offset == 0 {
			hdrAt = h.Start
			break
		}
	}
	if hdrAt == 0 {
		return nil
	}
	var eh [64]byte
	if _, err := mem.ReadAt(eh[:], hdrAt); err != nil {
		return nil
	}
	if string(eh[:4]) != "\x7fELF" || eh[4] != 2 || eh[5] != 1 {
		return nil
	}
	le := binary.LittleEndian
	phoff, phentsize, phnum := le.Uint64(eh[32:]), uint64(le.Uint16(eh[54:])), uint64(le.Uint16(eh[56:]))
	if phentsize < 56 || phnum == 0 || phnum > 128 || phoff > page*16 {
		return nil
	}
	ph := make([]byte, phentsize*phnum)
	if _, err := mem.ReadAt(ph, hdrAt+phoff); err != nil {
		return nil
	}
	const ptLoad, pfX = 1, 1
	for i := uint64(0); i < phnum; i++ {
		p := ph[i*phentsize:]
		typ, flags := le.Uint32(p[0:]), le.Uint32(p[4:])
		off, vaddr, filesz, memsz := le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[32:]), le.Uint64(p[40:])
		if typ != ptLoad || flags&pfX == 0 || off&^(page-1) != m.Offset || filesz != memsz || filesz == 0 {
			continue
		}
		bias := m.Start - vaddr&^(page-1)
		end := bias + vaddr + filesz
		pageEnd := (end + page - 1) &^ (page - 1)
		if end <= m.Start || pageEnd != m.End || end == pageEnd {
			return nil
		}
		return &cave{addr: end, size: pageEnd - end, file: m.Path}
	}
	return nil
}
