package layouttest

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/pyglass/pyglass/cpython/layout"
)

// gilBase is where DebugBlock puts the GIL inside PyInterpreterState.
const gilBase = 7752

// DebugBlock builds a _Py_DebugOffsets block (header and members) as a
// GIL build of CPython would publish it for layout l: members that set a
// Layout field take its value; the GIL's members are placed at gilBase;
// a group's size not in l is the end of its last member, rounded up to
// 8; every other member is 0. members names the member order (the
// version's own, layout.DebugMembers of l's minor, when minor is 0).
// version is the PY_VERSION_HEX written in the header.
func DebugBlock(l *layout.Layout, minor int, version uint64, freeThreaded bool) ([]byte, error) {
	if minor == 0 {
		minor = l.Minor
	}
	members, fields := layout.DebugMembers(minor)
	if members == nil {
		return nil, fmt.Errorf("no _Py_DebugOffsets members known for 3.%d", minor)
	}
	f := l.Fields()
	vals := map[string]uint64{}
	ends := map[string]uint64{}
	for i, m := range members {
		var v uint64
		switch {
		case fields[i] != "" && f[fields[i]] >= 0:
			v = uint64(f[fields[i]])
		case m == "interpreter_state.gil_runtime_state":
			v = gilBase
		case m == "interpreter_state.gil_runtime_state_locked" && f["GilLocked"] >= 0:
			v = gilBase + uint64(f["GilLocked"])
		case m == "interpreter_state.gil_runtime_state_holder" && f["GilLastHolder"] >= 0:
			v = gilBase + uint64(f["GilLastHolder"])
		}
		vals[m] = v
		group, member, _ := strings.Cut(m, ".")
		if member != "size" {
			ends[group] = max(ends[group], v+8)
		}
	}
	b := make([]byte, 24+8*len(members))
	copy(b, layout.DebugCookie)
	binary.LittleEndian.PutUint64(b[8:], version)
	if freeThreaded {
		binary.LittleEndian.PutUint64(b[16:], 1)
	}
	for i, m := range members {
		v := vals[m]
		if group, member, _ := strings.Cut(m, "."); member == "size" && (fields[i] == "" || f[fields[i]] < 0) {
			v = (ends[group] + 7) &^ 7
		}
		binary.LittleEndian.PutUint64(b[24+8*i:], v)
	}
	return b, nil
}

// SetMember overwrites member name of a block built by DebugBlock for
// 3.minor.
func SetMember(b []byte, minor int, name string, v uint64) error {
	members, _ := layout.DebugMembers(minor)
	for i, m := range members {
		if m == name {
			binary.LittleEndian.PutUint64(b[24+8*i:], v)
			return nil
		}
	}
	return fmt.Errorf("3.%d has no debug offset %s", minor, name)
}
