package e2e

import (
	"regexp"
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
// thread safe to borrow") after 0.35 s; six in a row never all passed.
func TestExecBusyInC(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, cBusyScript)
		pid := strconv.Itoa(tg.PID)
		last := -1
		for i := 0; i < 6; i++ {
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

// longCScript runs C calls that each last about 6 s (calibrated at start)
// with the GIL released, checking that every result is the same: OpenSSL's
// PBKDF2 (hashlib), or else libcrypt's SHA-512 crypt through ctypes. It
// prints "READY NOLONGCALL" when it has neither.
const longCScript = `import sys, time
call = None
try:
    from _hashlib import pbkdf2_hmac
    call = lambda n: pbkdf2_hmac("sha256", b"pw", b"salt", n)
except ImportError:
    try:
        import ctypes, ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("crypt"))
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        call = lambda n: lib.crypt(b"pw", ("$6$rounds=%d$salt" % n).encode("ascii"))
    except Exception:
        pass
if call is None:
    sys.stdout.write("READY NOLONGCALL\n"); sys.stdout.flush()
    time.sleep(600)
t0 = time.time()
call(50000)
n = int(6.0 * 50000 / max(time.time() - t0, 1e-6))
first = None
sys.stdout.write("READY %d\n" % n); sys.stdout.flush()
while True:
    t0 = time.time()
    r = call(n)
    if first is None:
        first = r
    elif r != first:
        sys.stdout.write("BAD\n")
    sys.stdout.write("CALL %.3f\n" % (time.time() - t0)); sys.stdout.flush()
`

// TestExecLongCCall: while the only thread is inside one long C call
// (in libcrypto or libcrypt, GIL released) that outlasts --timeout, exec gives
// up at its timeout with exit 5 (never 3), naming the thread and the
// library it runs in; with a timeout longer than the call it succeeds as
// soon as the call returns. The target's results stay right.
func TestExecLongCCall(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, longCScript, testenv.ReadyTimeout(60*time.Second))
		for _, l := range tg.Stdout() {
			if strings.Contains(l, "NOLONGCALL") {
				testenv.Skipf(t, "neither OpenSSL's PBKDF2 (hashlib) nor libcrypt (ctypes): no long C call that releases the GIL")
			}
		}
		pid := strconv.Itoa(tg.PID)
		// The first call starts right after READY and lasts about 6 s.
		time.Sleep(200 * time.Millisecond)
		r := run(t, nil, "exec", pid, "--timeout", "1s", "-c", "print(1)")
		want(t, r, 5)
		oneLineErr(t, r, "runs C code in")
		// The library is libcrypto or libcrypt, or libc when sampled in a
		// libc function they call.
		if !regexp.MustCompile(`thread ` + strconv.Itoa(tg.NSPID) + ` runs C code in /\S*lib(crypt|c)\S*\.so`).MatchString(r.Stderr) {
			t.Fatalf("the error does not name the thread and its library: %q", r.Stderr)
		}
		call := tg.WaitLine("CALL", 60*time.Second)
		secs, _ := strconv.ParseFloat(strings.Fields(call)[1], 64)
		if r.Took >= time.Duration(secs*float64(time.Second)) {
			t.Fatalf("exec took %v to give up, as long as the C call (%.1f s)", r.Took, secs)
		}
		t.Logf("gave up after %v (call %.1f s): %s", r.Took.Round(time.Millisecond), secs, strings.TrimSpace(r.Stderr))

		// A timeout longer than a call: the thread is borrowed when the
		// running call returns.
		r = run(t, nil, "exec", pid, "--timeout", "40s", "-c", "print(2)")
		want(t, r, 0)
		if r.Stdout != "2\n" {
			t.Fatalf("output %q", r.Stdout)
		}
		t.Logf("exec with a long timeout took %v", r.Took.Round(time.Millisecond))
		tg.WaitLine("CALL", 60*time.Second)
		healthy(t, tg)
		for _, l := range tg.Stdout() {
			if strings.HasPrefix(l, "BAD") {
				t.Fatalf("target: %s", l)
			}
		}
	})
}

// numpyScript keeps its only thread in numpy's C loops (ufuncs over 8
// million doubles release the GIL), checking one result of each.
const numpyScript = `import sys
import numpy as np
a = np.arange(8 << 20, dtype=np.float64)
c = np.empty_like(a)
n = 0
sys.stdout.write("READY\n"); sys.stdout.flush()
while True:
    k = (n * 7919) % a.size
    np.sqrt(a, out=c)
    np.multiply(c, c, out=c)
    if abs(c[k] - a[k]) > 1e-6 * max(a[k], 1.0):
        sys.stdout.write("BAD %d %r %r\n" % (k, c[k], a[k])); sys.stdout.flush()
    n += 1
`

// TestExecNumpyLoop: exec on Debian's python3.11 whose only thread runs
// numpy loops succeeds every time, and the loop's results stay right.
func TestExecNumpyLoop(t *testing.T) {
	in, ok := testenv.Lookup("3.11-debian")
	if !ok {
		t.Skip("Debian's /usr/bin/python3.11 is not installed")
	}
	if err := in.Command("-c", "import numpy").Run(); err != nil {
		t.Skipf("numpy is not importable by Debian's python3.11 (install python3-numpy): %v", err)
	}
	tg := testenv.Start(t, in, numpyScript)
	pid := strconv.Itoa(tg.PID)
	last := -1
	for i := 0; i < 4; i++ {
		r := run(t, nil, "exec", pid, "--timeout", "30s", "-c", "import __main__; print(__main__.n)")
		want(t, r, 0)
		n, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
		if err != nil || n < last {
			t.Fatalf("output %q after %d", r.Stdout, last)
		}
		t.Logf("exec %d took %v (loops so far %d)", i, r.Took.Round(time.Millisecond), n)
		last = n
	}
	time.Sleep(500 * time.Millisecond)
	r := run(t, nil, "exec", pid, "-c", "import __main__; print(__main__.n)")
	want(t, r, 0)
	if n, _ := strconv.Atoi(strings.TrimSpace(r.Stdout)); n <= last {
		t.Fatalf("the target stopped looping: %d, then %d", last, n)
	}
	healthy(t, tg)
	for _, l := range tg.Stdout() {
		if strings.HasPrefix(l, "BAD") {
			t.Fatalf("target: %s", l)
		}
	}
}

// TestExecCCallHoldingGIL: the only thread is in a long C call that holds
// the GIL (a ctypes.PyDLL function: libcrypt's SHA-512 crypt). It cannot
// run Python before the call returns: exec exits 5 at its timeout (never
// 3), naming the thread as the GIL holder.
func TestExecCCallHoldingGIL(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		script := `import sys, time, ctypes, ctypes.util
name = ctypes.util.find_library("crypt")
if not name:
    sys.stdout.write("READY NOLIBCRYPT\n"); sys.stdout.flush()
    time.sleep(600)
lib = ctypes.PyDLL(name)
lib.crypt.restype = ctypes.c_char_p
lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
call = lambda n: lib.crypt(b"pw", ("$6$rounds=%d$salt" % n).encode("ascii"))
t0 = time.time()
call(50000)
n = int(6.0 * 50000 / max(time.time() - t0, 1e-6))
sys.stdout.write("READY %d\n" % n); sys.stdout.flush()
while True:
    call(n)
    sys.stdout.write("CALL\n"); sys.stdout.flush()
`
		tg := testenv.Start(t, in, script, testenv.ReadyTimeout(60*time.Second))
		for _, l := range tg.Stdout() {
			if strings.Contains(l, "NOLIBCRYPT") {
				testenv.Skipf(t, "libcrypt not found by ctypes.util.find_library")
			}
		}
		time.Sleep(200 * time.Millisecond)
		r := run(t, nil, "exec", strconv.Itoa(tg.PID), "--timeout", "1s", "-c", "print(1)")
		want(t, r, 5)
		oneLineErr(t, r, "GIL")
		if !strings.Contains(r.Stderr, "thread "+strconv.Itoa(tg.NSPID)) {
			t.Fatalf("the error does not name the thread: %q", r.Stderr)
		}
		t.Logf("%s", strings.TrimSpace(r.Stderr))
		tg.WaitLine("CALL", 60*time.Second)
		healthy(t, tg)
	})
}

// TestExecSeveralThreadsBusyInC: four threads copy with ctypes in a loop
// (GIL released); while the gate is open any of them may enter it, and
// several at once. Every exec succeeds and every thread goes on copying
// right.
func TestExecSeveralThreadsBusyInC(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		script := `import ctypes, sys, threading
def work(idx):
    size = 16 << 20
    src = ctypes.create_string_buffer(size)
    dst = ctypes.create_string_buffer(size)
    n = 0
    while True:
        k = (n * 7919 + idx) % size
        src[k] = bytes(bytearray([n % 251]))
        ctypes.memmove(dst, src, size)
        if dst[k] != src[k]:
            sys.stdout.write("BAD %d %d\n" % (idx, n)); sys.stdout.flush()
        n += 1
        counts[idx] = n
counts = [0] * 4
for i in range(3):
    t = threading.Thread(target=work, args=(i,))
    t.daemon = True
    t.start()
sys.stdout.write("READY\n"); sys.stdout.flush()
work(3)
`
		tg := testenv.Start(t, in, script)
		pid := strconv.Itoa(tg.PID)
		var first []string
		for i := 0; i < 4; i++ {
			r := run(t, nil, "exec", pid, "--timeout", "30s", "-c", "import __main__; print(' '.join(str(c) for c in __main__.counts))")
			want(t, r, 0)
			t.Logf("exec %d took %v: %s", i, r.Took.Round(time.Millisecond), strings.TrimSpace(r.Stdout))
			if i == 0 {
				first = strings.Fields(r.Stdout)
			}
			if i == 3 {
				last := strings.Fields(r.Stdout)
				for k := range last {
					a, _ := strconv.Atoi(first[k])
					b, _ := strconv.Atoi(last[k])
					if len(first) != 4 || b <= a {
						t.Fatalf("thread %d stopped copying: %v, then %v", k, first, last)
					}
				}
			}
		}
		healthy(t, tg)
		for _, l := range tg.Stdout() {
			if strings.HasPrefix(l, "BAD") {
				t.Fatalf("target: %s", l)
			}
		}
	})
}
