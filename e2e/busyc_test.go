package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// cBusyScript keeps its only thread in C code with the GIL released
// nearly all the time: ctypes calls of libc's memmove over 64 MB. Each
// copy is checked ("BAD" if wrong); n counts them.
const cBusyScript = `import ctypes, sys
size = 64 << 20
src = ctypes.create_string_buffer(size)
dst = ctypes.create_string_buffer(size)
n = 0
sys.stdout.write("READY\n"); sys.stdout.flush()
while True:
    k = (n * 7919) % size
    src[k] = bytes(bytearray([n % 251]))
    ctypes.memmove(dst, src, size)
    if dst[k] != src[k]:
        sys.stdout.write("BAD copy %d\n" % n); sys.stdout.flush()
    n += 1
`

// TestExecBusyInC: exec on a process whose only thread runs C code outside
// the interpreter succeeds, every time, well within its timeout, and the
// process goes on computing right (its copy counter grows, no copy is
// wrong). Before the gate, most of these execs failed with exit 3 ("no
// thread safe to borrow") after 0.35 s.
func TestExecBusyInC(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, cBusyScript)
		pid := strconv.Itoa(tg.PID)
		last := -1
		for i := 0; i < 4; i++ {
			r := run(t, nil, "exec", pid, "--timeout", "30s", "-c", "import __main__; print(__main__.n)")
			want(t, r, 0)
			n, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
			if err != nil {
				t.Fatalf("output %q", r.Stdout)
			}
			if n < last {
				t.Fatalf("copy counter went back from %d to %d", last, n)
			}
			t.Logf("exec %d took %v (copies so far %d)", i, r.Took.Round(time.Millisecond), n)
			if i > 0 && n == last {
				// Four execs at least one copy apart each: the loop runs.
				time.Sleep(300 * time.Millisecond)
			}
			last = n
		}
		r := run(t, nil, "exec", pid, "-c", "import __main__; print(__main__.n)")
		want(t, r, 0)
		if n, _ := strconv.Atoi(strings.TrimSpace(r.Stdout)); n <= last {
			t.Fatalf("the target stopped copying: counter %d, then %d", last, n)
		}
		healthy(t, tg)
		for _, l := range tg.Stdout() {
			if strings.HasPrefix(l, "BAD") {
				t.Fatalf("target: %s", l)
			}
		}
	})
}
