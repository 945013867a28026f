package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxMappings bounds the number of lines read from /proc/PID/maps.
const maxMappings = 1 << 20

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64 // [Start, End)
	Perms      Perms
	Offset     uint64 // file offset of Start
	Major      uint32 // device of the mapped file
	Minor      uint32
	Inode      uint64 // 0 for anonymous mappings
	// Path is the file name as the target sees it, without the
	// " (deleted)" suffix, or a pseudo name such as "[heap]", or "".
	Path string
	// Deleted is set when the kernel marked the file " (deleted)".
	Deleted bool
}

// Perms are the permissions of a mapping.
type Perms struct {
	Read, Write, Exec, Shared bool
}

// String returns the permissions as /proc/PID/maps prints them ("r-xp").
func (p Perms) String() string {
	b := []byte("---p")
	if p.Read {
		b[0] = 'r'
	}
	if p.Write {
		b[1] = 'w'
	}
	if p.Exec {
		b[2] = 'x'
	}
	if p.Shared {
		b[3] = 's'
	}
	return string(b)
}

// Size returns End-Start.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// Contains reports whether addr lies in the mapping.
func (m Mapping) Contains(addr uint64) bool { return addr >= m.Start && addr < m.End }

// IsFile reports whether the mapping is backed by a file (not anonymous,
// not a pseudo mapping such as [heap] or [vdso]).
func (m Mapping) IsFile() bool { return m.Inode != 0 && strings.HasPrefix(m.Path, "/") }

// Maps reads /proc/PID/maps.
func (p Proc) Maps() ([]Mapping, error) {
	b, err := p.readFile("maps")
	if err != nil {
		return nil, err
	}
	ms, err := ParseMaps(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", p.Path("maps"), err)
	}
	return ms, nil
}

// ParseMaps parses the format of /proc/PID/maps.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if len(out) >= maxMappings {
			return nil, fmt.Errorf("more than %d mappings: %w", maxMappings, ErrParse)
		}
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseMapsLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scanning maps: %w", err)
	}
	return out, nil
}

func parseMapsLine(line string) (Mapping, error) {
	var m Mapping
	bad := func(what string) (Mapping, error) {
		return Mapping{}, fmt.Errorf("maps line %q: bad %s: %w", line, what, ErrParse)
	}
	rest := line
	field := func() string {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			f := rest
			rest = ""
			return f
		}
		f := rest[:i]
		rest = rest[i+1:]
		return f
	}
	rng, perms, off, dev, ino := field(), field(), field(), field(), field()
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("range")
	}
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return bad("start")
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil || m.End < m.Start {
		return bad("end")
	}
	if len(perms) != 4 {
		return bad("perms")
	}
	m.Perms = Perms{Read: perms[0] == 'r', Write: perms[1] == 'w', Exec: perms[2] == 'x', Shared: perms[3] == 's'}
	if m.Offset, err = strconv.ParseUint(off, 16, 64); err != nil {
		return bad("offset")
	}
	maj, min, ok := strings.Cut(dev, ":")
	if !ok {
		return bad("device")
	}
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(min, 16, 32)
	if err1 != nil || err2 != nil {
		return bad("device")
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	if m.Inode, err = strconv.ParseUint(ino, 10, 64); err != nil {
		return bad("inode")
	}
	path := strings.TrimLeft(rest, " ")
	if p, ok := strings.CutSuffix(path, " (deleted)"); ok && m.Inode != 0 {
		path, m.Deleted = p, true
	}
	m.Path = path
	return m, nil
}
