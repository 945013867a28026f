package inject

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pyglass/pyglass/internal/ptrace"
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

type mapLine struct {
	lo, hi, off uint64
	perms, path string
}

func readMapLines(pid int) ([]mapLine, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("reading maps: %w", err)
	}
	defer f.Close()
	var out []mapLine
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan() && n < 100000; n++ {
		fl := strings.Fields(sc.Text())
		if len(fl) < 6 || !strings.HasPrefix(fl[5], "/") {
			continue
		}
		lo, hi, ok := strings.Cut(fl[0], "-")
		if !ok {
			continue
		}
		var m mapLine
		var e1, e2, e3 error
		m.lo, e1 = strconv.ParseUint(lo, 16, 64)
		m.hi, e2 = strconv.ParseUint(hi, 16, 64)
		m.off, e3 = strconv.ParseUint(fl[2], 16, 64)
		if e1 != nil || e2 != nil || e3 != nil {
			continue
		}
		m.perms, m.path = fl[1], strings.Join(fl[5:], " ")
		out = append(out, m)
	}
	return out, sc.Err()
}

// findCave returns a cave of at least need bytes (16-byte aligned start),
// preferring the interpreter's own mappings and never overlapping a range
// of taken. It returns nil when there is none; the original bytes are read
// into the result.
func findCave(mem *ptrace.Mem, pid int, need uint64, prefer, taken [][2]uint64, page uint64) (*cave, error) {
	maps, err := readMapLines(pid)
	if err != nil {
		return nil, err
	}
	return pickCave(mem, pid, maps, need, prefer, taken, page), nil
}

// pyglassCode lists where a thread may be running code of an earlier
// injection that is restoring itself (its pyglass died or gave up): the
// cave regions of all executable file mappings and all anonymous
// executable mappings. Such a thread is never borrowed.
func pyglassCode(mem *ptrace.Mem, pid int, page uint64) ([][2]uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("reading maps: %w", err)
	}
	defer f.Close()
	var out [][2]uint64
	var files []mapLine
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan() && n < 100000; n++ {
		fl := strings.Fields(sc.Text())
		if len(fl) < 5 || !strings.Contains(fl[1], "x") {
			if len(fl) >= 6 && strings.HasPrefix(fl[5], "/") && fl[2] == "00000000" {
				lo, _, _ := strings.Cut(fl[0], "-")
				a, _ := strconv.ParseUint(lo, 16, 64)
				files = append(files, mapLine{lo: a, off: 0, path: strings.Join(fl[5:], " ")})
			}
			continue
		}
		lo, hi, _ := strings.Cut(fl[0], "-")
		a, e1 := strconv.ParseUint(lo, 16, 64)
		b, e2 := strconv.ParseUint(hi, 16, 64)
		off, e3 := strconv.ParseUint(fl[2], 16, 64)
		if e1 != nil || e2 != nil || e3 != nil {
			continue
		}
		if len(fl) < 6 || !strings.HasPrefix(fl[5], "/") {
			out = append(out, [2]uint64{a, b})
			continue
		}
		m := mapLine{lo: a, hi: b, off: off, perms: fl[1], path: strings.Join(fl[5:], " ")}
		if off == 0 {
			files = append(files, m)
		}
		if c := caveIn(mem, append(files, m), m, page); c != nil {
			out = append(out, [2]uint64{c.addr, c.addr + c.size})
		}
	}
	return out, sc.Err()
}

func pickCave(mem *ptrace.Mem, pid int, maps []mapLine, need uint64, prefer, taken [][2]uint64, page uint64) *cave {
	var order []mapLine
	isPreferred := func(m mapLine) bool {
		for _, r := range prefer {
			if m.lo >= r[0] && m.lo < r[1] {
				return true
			}
		}
		return false
	}
	for _, pass := range []bool{true, false} {
		for _, m := range maps {
			if m.perms == "r-xp" && isPreferred(m) == pass {
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
		tail := make([]byte, m.hi-c.addr)
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
			if !caveStale(pid, tail[off+i+len(caveMagic):], c.addr, m.hi) {
				busy = append(busy, [2]uint64{at - min(at-c.addr, maxBoot), at + uint64(len(caveMagic)) + 8})
			}
			off += i + 1
		}
		for at := (c.addr + 15) &^ 15; at+need <= m.hi; at += (need + 15) &^ 15 {
			free := true
			for _, b := range busy {
				if at < b[1] && at+need > b[0] {
					free = false
				}
			}
			if !free {
				continue
			}
			c := &cave{addr: at, size: need, file: m.path, orig: make([]byte, need)}
			copy(c.orig, tail[at-(m.hi-uint64(len(tail))):])
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
	tids, err := ptrace.Tasks(pid)
	if err != nil {
		return false
	}
	for _, tid := range tids {
		sc, err := ptrace.ReadTaskSyscall(pid, tid)
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
// own bytes, when the file can be read; otherwise b is left as it is (the
// cave then goes back to the old bootstrap, which is never run).
func fileBytes(pid int, m mapLine, addr uint64, b []byte) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/root%s", pid, m.path))
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, len(b))
	n, err := f.ReadAt(buf, int64(m.off+(addr-m.lo)))
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	clear(buf[n:]) // past the end of the file the page holds zeros
	copy(b, buf)
}

// caveIn finds the segment end inside the executable mapping m from the
// ELF program headers in memory (the header is at the start of the
// file's offset-0 mapping). Only 64-bit little-endian ELF is handled.
func caveIn(mem *ptrace.Mem, maps []mapLine, m mapLine, page uint64) *cave {
	var hdrAt uint64
	for _, h := range maps {
		if h.path == m.path && h.off == 0 {
			hdrAt = h.lo
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
		if typ != ptLoad || flags&pfX == 0 || off&^(page-1) != m.off || filesz != memsz || filesz == 0 {
			continue
		}
		bias := m.lo - vaddr&^(page-1)
		end := bias + vaddr + filesz
		pageEnd := (end + page - 1) &^ (page - 1)
		if end <= m.lo || pageEnd != m.hi || end == pageEnd {
			return nil
		}
		return &cave{addr: end, size: pageEnd - end, file: m.path}
	}
	return nil
}
