package inject

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pyglass/pyglass/internal/ptrace"
)

// execMappings lists the executable file mappings of pid from /proc/PID/maps.
func execMappings(pid int) ([][2]uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("reading maps: %w", err)
	}
	defer f.Close()
	var out [][2]uint64
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan() && n < 100000; n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.Contains(fields[1], "x") || !strings.HasPrefix(fields[5], "/") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil {
			out = append(out, [2]uint64{a, b})
		}
	}
	return out, sc.Err()
}

// findSyscallInstr looks for a syscall instruction in the interpreter's
// text, then in any executable file mapping, never at avoid (the thread's
// own PC: on arm64 the kernel may rewrite x8 when resuming there).
func findSyscallInstr(mem *ptrace.Mem, pid int, prefer [][2]uint64, avoid uint64) (uint64, error) {
	all, err := execMappings(pid)
	if err != nil {
		return 0, err
	}
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
