package inject

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

// sigrecSource is a C library whose SA_SIGINFO handler checks every
// signal's siginfo against what the test sends: a queued signal (si_code
// SI_QUEUE) from the test's process, its value a sequence number.
const sigrecSource = `
#include <signal.h>
#include <string.h>

static int want_pid;
static volatile long n, bad, sum, bad_code, bad_pid, bad_val;

static void handler(int sig, siginfo_t *si, void *uc) {
	(void)sig; (void)uc;
	__atomic_add_fetch(&n, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&sum, si->si_value.sival_int, __ATOMIC_SEQ_CST);
	if (si->si_code != SI_QUEUE || si->si_pid != want_pid) {
		if (__atomic_add_fetch(&bad, 1, __ATOMIC_SEQ_CST) == 1) {
			bad_code = si->si_code; bad_pid = si->si_pid; bad_val = si->si_value.sival_int;
		}
	}
}

int install(int sig, int pid) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	want_pid = pid;
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, 0);
}

long count(void) { return n; }
long bads(void) { return bad; }
long total(void) { return sum; }
long first_bad(int what) { return what == 0 ? bad_code : what == 1 ? bad_pid : bad_val; }
`

// siginfoFixture installs the handler for signal argv[2] and sleeps in
// three threads and the main one (threads to borrow); "report" prints
// what the handler counted.
const siginfoFixture = `import ctypes, sys, threading, time
lib = ctypes.CDLL(sys.argv[1])
for f in (lib.count, lib.bads, lib.total, lib.first_bad):
    f.restype = ctypes.c_long
if lib.install(int(sys.argv[2]), int(sys.argv[3])) != 0:
    print("ERR sigaction failed")
def sleeper():
    while True:
        time.sleep(0.5)
for i in range(3):
    t = threading.Thread(target=sleeper)
    t.daemon = True
    t.start()
print("READY")
sys.stdout.flush()
while True:
    line = sys.stdin.readline()
    if not line:
        break
    if line.strip() == "report":
        print("REPORT n=%d bad=%d sum=%d first_bad=%d,%d,%d" % (lib.count(), lib.bads(), lib.total(), lib.first_bad(0), lib.first_bad(1), lib.first_bad(2)))
        sys.stdout.flush()
`

// TestHeldSignalsKeepSiginfo: a signal that comes for the borrowed thread
// while pyglass holds it is delivered once the thread is given back, with
// the siginfo it came with. The test queues real-time signals with a
// value (sigqueue's way) at the target's threads while it injects; the
// target's handler checks each one's sender and code, and counts them.
// Sent again with tgkill, as before, they came as SI_TKILL from pyglass's
// process, with no value.
func TestHeldSignalsKeepSiginfo(t *testing.T) {
	gcc := needGCC(t, "the signal-recording library")
	const sig = 40 // a real-time signal (glibc keeps 32 and 33)
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !deliversWithSiginfo {
			testenv.Skipf(t, "on this machine held signals are sent again after the detach, without their siginfo (deliversWithSiginfo)")
		}
		lib := buildLib(t, in, gcc, "sigrec", sigrecSource)
		// In a PID namespace of its own (a container's), the target
		// does not see the test's process (pyglass's): the signals it
		// sends come from pid 0.
		for _, ns := range []struct {
			name   string
			opts   []testenv.StartOption
			sender int
		}{{"host", nil, os.Getpid()}, {"pidns", []testenv.StartOption{testenv.NewPIDNS()}, 0}} {
			t.Run(ns.name, func(t *testing.T) {
				tt := testenv.Start(t, in, siginfoFixture, append(ns.opts, testenv.Args(lib, fmt.Sprint(sig), fmt.Sprint(ns.sender)))...)
				tg := &target{Target: tt, t: t, pid: tt.PID}
				tids, err := procfs.New(tg.pid).TaskIDs()
				if err != nil || len(tids) < 4 {
					t.Fatalf("threads of %d: %v %v", tg.pid, tids, err)
				}
				syms := resolve(t, tg.pid)

				// The sender: a queued signal every half millisecond or so
				// (a thousand a second here), to each thread in turn, its
				// value the count sent so far.
				var sent atomic.Int64
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						seq := sent.Load() + 1
						e := queueSignal(tg.pid, tids[i%len(tids)], sig, int32(seq))
						if e == 0 {
							sent.Store(seq)
						}
						time.Sleep(500 * time.Microsecond)
					}
				}()
				held, kept, n := 0, 0, 0
				for ; n < 200 && held < 5; n++ {
					res, err := StartThread(tg.pid, syms, []byte("pass\n"), Options{Timeout: 10 * time.Second})
					if err != nil {
						close(stop)
						<-done
						t.Fatalf("injection %d: %v", n, err)
					}
					held += res.Signals
					kept += res.SiginfoKept
				}
				close(stop)
				<-done
				checkReleased(t, tg.pid)
				if held == 0 {
					t.Fatalf("no signal came for the borrowed thread in %d injections: nothing was tested", n)
				}
				total := sent.Load()
				var got, bad, sum, code, pid, val int64
				testenv.WaitUntil(t, 10*time.Second, "the target has handled every signal sent", func() bool {
					tg.Send("report")
					line := tg.WaitLine("REPORT", 10*time.Second)
					fmt.Sscanf(line, "REPORT n=%d bad=%d sum=%d first_bad=%d,%d,%d", &got, &bad, &sum, &code, &pid, &val)
					return got >= total
				})
				t.Logf("%d injections, %d signals held, %d with their siginfo; %d sent, %d handled", n, held, kept, total, got)
				if bad > 0 {
					t.Errorf("%d of %d signals came with another siginfo: the first with code %d, pid %d, value %d (want code -1, pid %d)", bad, got, code, pid, val, ns.sender)
				}
				if got != total || sum != total*(total+1)/2 {
					t.Errorf("handled %d signals (values summing to %d), sent %d (summing to %d): lost or doubled", got, sum, total, total*(total+1)/2)
				}
				tg.checkHealthy()
			})
		}
	})
}

// needGCC returns the path of gcc, which builds what; the test skips
// without it.
func needGCC(t *testing.T, what string) string {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		testenv.Skipf(t, "no gcc to build %s", what)
	}
	return gcc
}

// buildLib builds the C source src into a shared library name.so in a
// directory the target of in can read, and returns its path as the
// target sees it.
func buildLib(t *testing.T, in testenv.Interp, gcc, name, src string) string {
	t.Helper()
	host, inside := testenv.TempDir(t, in)
	c, so := filepath.Join(host, name+".c"), filepath.Join(host, name+".so")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-O1", "-shared", "-fPIC", "-o", so, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	os.Chmod(so, 0o755)
	return inside + "/" + name + ".so"
}
