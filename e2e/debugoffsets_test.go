package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// corruptDebugOffsets is a target that, from inside, bumps the minor
// version in its own _Py_DebugOffsets header (the byte after the cookie's
// 8 bytes and the micro version's: CPython itself never reads it), so that
// they describe another version than the interpreter's.
const corruptDebugOffsets = `import ctypes, sys, time
rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
assert ctypes.string_at(rt, 8) == b"xdebugpy", ctypes.string_at(rt, 8)
b = ctypes.c_ubyte.from_address(rt + 10)
b.value += 1
print("READY")
sys.stdout.flush()
def wait():
    while True:
        time.sleep(0.05)
wait()
`

// TestCorruptDebugOffsetsWarn: on a 3.13+ target whose _Py_DebugOffsets
// describe another version, stacks and record read it with pyglass's
// table and say so, in one warning line on stderr.
func TestCorruptDebugOffsetsWarn(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 13) {
			testenv.Skipf(t, "%s has no _Py_DebugOffsets (3.13+)", in.Label)
		}
		tg := testenv.Start(t, in, corruptDebugOffsets)
		pid := strconv.Itoa(tg.PID)
		warned := func(r result) {
			t.Helper()
			lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
			n := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "pyglass: warning: ") && strings.Contains(l, "_Py_DebugOffsets are unusable") && strings.Contains(l, "own table") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("want one warning line about the fallback, got stderr %q", r.Stderr)
			}
		}
		r := run(t, nil, "stacks", pid)
		want(t, r, 0)
		if !strings.Contains(r.Stdout, "in wait") {
			t.Fatalf("stacks: %s", r)
		}
		warned(r)
		out := filepath.Join(t.TempDir(), "p.txt")
		r = run(t, nil, "record", pid, "--duration", "1s", "--rate", "100", "--idle", "-o", out)
		want(t, r, 0)
		warned(r)
		healthy(t, tg)
	})
}
