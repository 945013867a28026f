package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
)

// Status holds the fields of /proc/PID/status that pyglass uses.
type Status struct {
	Name      string // comm, possibly truncated to 15 bytes
	State     byte   // 'R', 'S', 'D', 'T', 't', 'Z', 'X', 'I', ...
	StateName string // "sleeping", "zombie", ...
	Tgid      int
	PPid      int
	TracerPid int // 0 when not traced
	// Uid and Gid hold the real, effective, saved and file-system ids.
	Uid, Gid [4]int
	// NSpid and NStgid list the ids from our PID namespace (first) to the
	// process's own (last). They have one element when the process is in
	// our namespace.
	NSpid, NStgid []int
	Threads       int
	// CapEff is the effective capability set (bit 19 is CAP_SYS_PTRACE).
	CapEff uint64
	// ThreadFeatures is the x86_Thread_features line ("shstk wrss", ""
	// when absent: another architecture or an older kernel).
	ThreadFeatures string
	// The signal sets (bit n-1 is signal n): pending for the thread
	// (SigPnd) and for the whole process (ShdPnd), blocked, and caught
	// (a handler installed).
	SigPnd, ShdPnd, SigBlk, SigCgt uint64
}

// CaughtSignalPending says whether a signal with a handler is pending and
// not blocked: the thread runs the handler as it next leaves the kernel
// (and a call it is blocked in that a signal interrupts fails with EINTR).
func (s *Status) CaughtSignalPending() bool {
	return (s.SigPnd|s.ShdPnd)&s.SigCgt&^s.SigBlk != 0
}

// Blocks says whether the thread blocks signal sig (SigBlk).
func (s *Status) Blocks(sig syscall.Signal) bool { return s.SigBlk&sigBit(sig) != 0 }

// Catches says whether the process has a handler for signal sig (SigCgt).
func (s *Status) Catches(sig syscall.Signal) bool { return s.SigCgt&sigBit(sig) != 0 }

// sigBit is signal sig's bit in /proc's signal sets (0 for a number out
// of their range).
func sigBit(sig syscall.Signal) uint64 {
	if sig < 1 || sig > 64 {
		return 0
	}
	return 1 << (uint(sig) - 1)
}

// HasCap reports whether capability number c (CAP_SYS_PTRACE is 19) is
// in the effective set.
func (s *Status) HasCap(c uint) bool { return c < 64 && s.CapEff&(1<<c) != 0 }

// RealUID returns the real user id.
func (s *Status) RealUID() int { return s.Uid[0] }

// EffectiveUID returns the effective user id.
func (s *Status) EffectiveUID() int { return s.Uid[1] }

// InnerPID returns the PID as the process sees it in its own namespace.
func (s *Status) InnerPID() int {
	if len(s.NSpid) == 0 {
		return 0
	}
	return s.NSpid[len(s.NSpid)-1]
}

// Status reads /proc/PID/status.
func (p Proc) Status() (*Status, error) { return p.status("status") }

// TaskStatus reads /proc/PID/task/TID/status.
func (p Proc) TaskStatus(tid int) (*Status, error) {
	return p.status("task/" + strconv.Itoa(tid) + "/status")
}

func (p Proc) status(name string) (*Status, error) {
	b, err := p.readFile(name)
	if err != nil {
		return nil, err
	}
	s, err := ParseStatus(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", p.Path(name), err)
	}
	return s, nil
}

// ParseStatus parses the format of /proc/PID/status.
func ParseStatus(r io.Reader) (*Status, error) {
	s := &Status{}
	seen := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Name":
			s.Name = unescapeName(val)
			seen |= 1
		case "State":
			if val == "" {
				return nil, fmt.Errorf("empty State: %w", ErrParse)
			}
			s.State = val[0]
			if i, j := strings.IndexByte(val, '('), strings.LastIndexByte(val, ')'); i >= 0 && j > i {
				s.StateName = val[i+1 : j]
			}
			seen |= 2
		case "Tgid":
			s.Tgid, err = strconv.Atoi(val)
		case "PPid":
			s.PPid, err = strconv.Atoi(val)
		case "TracerPid":
			s.TracerPid, err = strconv.Atoi(val)
		case "Uid":
			err = parseIDs(val, &s.Uid)
			seen |= 4
		case "Gid":
			err = parseIDs(val, &s.Gid)
		case "NSpid":
			s.NSpid, err = parseInts(val)
		case "NStgid":
			s.NStgid, err = parseInts(val)
		case "Threads":
			s.Threads, err = strconv.Atoi(val)
		case "CapEff":
			s.CapEff, err = strconv.ParseUint(val, 16, 64)
		case "x86_Thread_features":
			s.ThreadFeatures = val
		case "SigPnd":
			s.SigPnd, err = strconv.ParseUint(val, 16, 64)
		case "ShdPnd":
			s.ShdPnd, err = strconv.ParseUint(val, 16, 64)
		case "SigBlk":
			s.SigBlk, err = strconv.ParseUint(val, 16, 64)
		case "SigCgt":
			s.SigCgt, err = strconv.ParseUint(val, 16, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("field %s %q: %w", key, val, ErrParse)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scanning status: %w", err)
	}
	if seen != 7 {
		return nil, fmt.Errorf("missing Name, State or Uid: %w", ErrParse)
	}
	return s, nil
}

func parseIDs(val string, out *[4]int) error {
	f := strings.Fields(val)
	if len(f) != 4 {
		return ErrParse
	}
	for i := range f {
		v, err := strconv.Atoi(f[i])
		if err != nil {
			return err
		}
		out[i] = v
	}
	return nil
}

func parseInts(val string) ([]int, error) {
	f := strings.Fields(val)
	if len(f) > 64 {
		return nil, ErrParse
	}
	out := make([]int, len(f))
	for i := range f {
		v, err := strconv.Atoi(f[i])
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// unescapeName undoes the escaping of the Name field ("\n" and "\\").
func unescapeName(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\n`, "\n", `\\`, `\`).Replace(s)
}
