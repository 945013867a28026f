package inject

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
	"golang.org/x/sys/unix"
)

// eintrSource is a C library with a handler installed without
// SA_RESTART, as CPython installs its own: a read that such a signal
// interrupts fails with EINTR, and wait_byte counts those failures.
const eintrSource = `
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile long handled, eintrs;

static void handler(int sig) {
	(void)sig;
	__atomic_add_fetch(&handled, 1, __ATOMIC_SEQ_CST);
}

int install(int sig) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sa.sa_flags = 0;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, 0);
}

/* Reads fd until a byte comes, counting the reads a signal interrupted. */
long wait_byte(int fd) {
	char c;
	for (;;) {
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR) {
			__atomic_add_fetch(&eintrs, 1, __ATOMIC_SEQ_CST);
			continue;
		}
		return r;
	}
}

long count_handled(void) { return handled; }
long count_eintrs(void) { return eintrs; }
`

// eintrFixture installs the handler for signals argv[2:] and blocks three
// threads in wait_byte on a pipe nobody writes to (threads to borrow);
// "report" prints the counts. The main thread waits for its commands in
// epoll, which pyglass borrows after threads in a read (a ptrace stop
// interrupts it).
const eintrFixture = `import ctypes, os, select, sys, threading
lib = ctypes.CDLL(sys.argv[1])
for f in (lib.count_handled, lib.count_eintrs):
    f.restype = ctypes.c_long
for sig in sys.argv[2:]:
    if lib.install(int(sig)) != 0:
        print("ERR sigaction failed")
r, w = os.pipe()
def reader():
    lib.wait_byte(r)
    print("ERR wait_byte returned")
    sys.stdout.flush()
for i in range(3):
    t = threading.Thread(target=reader)
    t.daemon = True
    t.start()
print("READY")
sys.stdout.flush()
ep = select.epoll()
ep.register(0, select.EPOLLIN)
while True:
    ep.poll()
    line = sys.stdin.readline()
    if not line:
        break
    if line.strip() == "report":
        print("REPORT handled=%d eintr=%d" % (lib.count_handled(), lib.count_eintrs()))
        sys.stdout.flush()
`

// tracedTask returns the one thread of pid in a tracing stop, 0 when
// there is none or more than one.
func tracedTask(pid int) int {
	tids, err := procfs.New(pid).TaskIDs()
	if err != nil {
		return 0
	}
	found := 0
	for _, tid := range tids {
		if st, err := taskState(pid, tid); err == nil && st == 't' {
			if found != 0 {
				return 0
			}
			found = tid
		}
	}
	return found
}

// TestHeldSignalInterruptsCall: a signal with a handler without
// SA_RESTART (CPython's kind) that comes for the borrowed thread while
// pyglass holds it, the thread stopped in a blocking read, makes that
// read fail with EINTR once the thread is given back, as it would have
// without pyglass: the handler runs, and the program's read loop sees
// the interruption (CPython's would run its Python handler there). Were
// the call restarted instead, the read would go on waiting, and a
// KeyboardInterrupt with it. The test sends the signal to the borrowed
// thread at the first step of each injection (testHookAbandon, which
// lets every step go on); the library counts the handler's runs and the
// reads that failed with EINTR.
func TestHeldSignalInterruptsCall(t *testing.T) {
	gcc := needGCC(t, "the signal-counting library")
	const sig = 40     // a real-time signal, sent once per injection
	var hooks sync.Map // pid -> func(): what to do at the step "boot"
	testHookAbandon = func(pid int, step string) bool {
		if f, ok := hooks.Load(pid); ok && step == "boot" {
			f.(func())()
		}
		return false
	}
	t.Cleanup(func() { testHookAbandon = nil })
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !deliversWithSiginfo {
			testenv.Skipf(t, "on this machine held signals are sent again after the detach, when the call was already restarted (deliversWithSiginfo)")
		}
		lib := buildLib(t, in, gcc, "eintr", eintrSource)
		// held: the held signal is the only one. meanwhile: another
		// one, of a lower number, comes as the held one is sent again,
		// and is delivered first, as it is; its delivery is the one
		// that must interrupt the read.
		for _, meanwhile := range []bool{false, true} {
			name, heldSig, perInjection := "held", syscall.Signal(sig), int64(1)
			if meanwhile {
				name, heldSig, perInjection = "meanwhile", sig+1, 2
			}
			t.Run(name, func(t *testing.T) {
				tt := testenv.Start(t, in, eintrFixture, testenv.Args(lib, fmt.Sprint(sig), fmt.Sprint(sig+1)))
				tg := &target{Target: tt, t: t, pid: tt.PID}
				testenv.WaitUntil(t, 10*time.Second, "every thread of the fixture blocks", func() bool {
					tids, err := procfs.New(tg.pid).TaskIDs()
					if err != nil || len(tids) < 4 {
						return false
					}
					for _, tid := range tids {
						if st, err := taskState(tg.pid, tid); err != nil || st != 'S' {
							return false
						}
					}
					return true
				})
				syms := resolve(t, tg.pid)

				// At each injection's first step, the signal for the borrowed
				// thread when it is a reader (the main thread waits in Python,
				// which retries an interrupted call unseen).
				var sent atomic.Int64
				hooks.Store(tg.pid, func() {
					if tid := tracedTask(tg.pid); tid != 0 && tid != tg.pid && unix.Tgkill(tg.pid, tid, heldSig) == nil {
						sent.Add(1)
					}
				})
				defer hooks.Delete(tg.pid)
				if meanwhile {
					// A signal of a lower number than the held one, queued
					// as it is sent again: the kernel delivers it first.
					testHookDeliver = func(pid, tid int) {
						if pid == tg.pid {
							queueSignal(pid, tid, sig, 0)
						}
					}
					defer func() { testHookDeliver = nil }()
				}
				held, n := 0, 0
				for ; n < 40 && sent.Load() < 5; n++ {
					res, err := StartThread(tg.pid, syms, []byte("pass\n"), Options{AvoidEINTR: in.Major == 2, Timeout: 10 * time.Second})
					if err != nil {
						t.Fatalf("injection %d: %v", n, err)
					}
					held += res.Signals
				}
				hooks.Delete(tg.pid)
				testHookDeliver = nil
				checkReleased(t, tg.pid)
				total := sent.Load()
				if total == 0 {
					t.Fatalf("none of %d injections borrowed a reader thread: nothing was tested", n)
				}
				if int64(held) != total {
					t.Errorf("%d signals sent to the borrowed thread, %d held", total, held)
				}
				var handled, eintrs int64
				testenv.WaitUntil(t, 10*time.Second, "the target has handled every signal sent", func() bool {
					tg.Send("report")
					line := tg.WaitLine("REPORT", 10*time.Second)
					fmt.Sscanf(line, "REPORT handled=%d eintr=%d", &handled, &eintrs)
					return handled >= perInjection*total
				})
				t.Logf("%d injections, %d signals sent to the borrowed reader, %d held; %d handled, %d reads interrupted", n, total, held, handled, eintrs)
				if handled != perInjection*total {
					t.Errorf("the handler ran %d times for %d signals", handled, perInjection*total)
				}
				if eintrs != total {
					t.Errorf("%d of %d reads a held signal came in were interrupted: the others were restarted, which a handler without SA_RESTART forbids", eintrs, total)
				}
				tg.checkHealthy()
			})
		}
	})
}

// queueSignal queues signal sig for thread tid of process pid as
// sigqueue does (SI_QUEUE, from this process, with value): not a signal
// pyglass sent. It returns the system call's error number (0: sent).
func queueSignal(pid, tid int, sig syscall.Signal, value int32) syscall.Errno {
	var si unix.Siginfo
	raw := (*[128]byte)(unsafe.Pointer(&si))
	si.Signo, si.Code = int32(sig), -1 // SI_QUEUE
	*(*int32)(unsafe.Pointer(&raw[16])) = int32(os.Getpid())
	*(*uint32)(unsafe.Pointer(&raw[20])) = uint32(os.Getuid())
	*(*int32)(unsafe.Pointer(&raw[24])) = value
	_, _, e := unix.Syscall6(unix.SYS_RT_TGSIGQUEUEINFO, uintptr(pid), uintptr(tid), uintptr(sig), uintptr(unsafe.Pointer(&si)), 0, 0)
	return e
}
