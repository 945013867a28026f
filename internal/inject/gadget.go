package inject

import (
	"bytes"
	"errors"
	"strings"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/target/live"
)

// execMappings lists the executable file mappings among maps.
func execMappings(maps []procfs.Mapping) [][2]uint64 {
	var out [][2]uint64
	for _, m := range maps {
		if m.Perms.Exec && strings.HasPrefix(m.Path, "/") {
			out = append(out, [2]uint64{m.Start, m.End})
		}
	}
	return out
}

// findSyscallInstr looks for a syscall instruction in the interpreter's
// text, then in any executable file mapping, never at avoid (the thread's
// own PC: on arm64 the kernel may rewrite x8 when resuming there).
func findSyscallInstr(mem *live.Process, maps []procfs.Mapping, prefer [][2]uint64, avoid uint64) (uint64, error) {
	all := execMappings(maps)
	ranges := append(append([][2]uint64{}, prefer...), all...)
	const chunk = 64 << 10
	budget := 256 << 20 // bytes scanned at most
	buf := make([]byte, chunk)
	ins := ptrace.SyscallInstr
	for _, r := range ranges {
		for a := r[0]; a < r[1] && budget > 0; a += chunk - uint64(len(ins)) {
			n := uint64(chunk)
			if r[1]-a < n {
				n = r[1] - a
			}
			got, _ := mem.ReadAt(buf[:n], a)
			budget -= got
			b := buf[:got]
			for off := 0; ; {
				i := bytes.Index(b[off:], ins)
				if i < 0 {
					break
				}
				at := a + uint64(off+i)
				if at%gadgetAlign == 0 && at != avoid {
					return at, nil
				}
				off += i + 1
			}
			if got == 0 {
				break
			}
		}
	}
	return 0, errors.New("no syscall instruction found in the target's code")
}
