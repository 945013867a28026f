package inject

import (
	"bufio"
	"debug/elf"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type mapping struct {
	lo, hi, off uint64
	perms, path string
}

func readMaps(pid int) ([]mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 5 {
			continue
		}
		lo, hi, _ := strings.Cut(fl[0], "-")
		var m mapping
		m.lo, _ = strconv.ParseUint(lo, 16, 64)
		m.hi, _ = strconv.ParseUint(hi, 16, 64)
		m.off, _ = strconv.ParseUint(fl[2], 16, 64)
		m.perms = fl[1]
		if len(fl) >= 6 {
			m.path = fl[5]
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// resolve is a test-only symbol resolver: ELF .dynsym of the executable,
// libpython and libc, relocated with the load bias from /proc/PID/maps.
func resolve(t *testing.T, pid int) Symbols {
	t.Helper()
	s, _ := resolveWith(t, pid)
	return s
}

// resolveWith is resolve, and also returns the addresses of every symbol
// it read (the interpreter's, and libc's munmap, __errno_location and
// pthread_*), by name.
func resolveWith(t *testing.T, pid int) (Symbols, map[string]uint64) {
	t.Helper()
	maps, err := readMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	syms := map[string]uint64{}
	var text [][2]uint64
	seen := map[string]bool{}
	for _, m := range maps {
		base := filepath.Base(m.path)
		isPy := m.path == exe || strings.HasPrefix(base, "libpython")
		isC := strings.HasPrefix(base, "libc.so") || strings.HasPrefix(base, "libc-")
		if !isPy && !isC {
			continue
		}
		if isPy && strings.Contains(m.perms, "x") {
			text = append(text, [2]uint64{m.lo, m.hi})
		}
		if seen[m.path] {
			continue
		}
		// map_files opens the very file mapped, whatever the target's
		// root and mounts (maps shows the path relative to our root).
		f, err := elf.Open(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.lo, m.hi))
		if err != nil {
			t.Fatalf("opening %s: %v", m.path, err)
		}
		var bias uint64
		if f.Type == elf.ET_DYN {
			found := false
			for _, p := range f.Progs {
				if p.Type == elf.PT_LOAD && p.Off <= m.off && m.off < p.Off+p.Filesz {
					bias = m.lo - (p.Vaddr - (p.Off - m.off)) - 0
					bias = m.lo - (p.Vaddr + (m.off - p.Off))
					found = true
					break
				}
			}
			if !found {
				f.Close()
				continue
			}
		}
		seen[m.path] = true
		ds, _ := f.DynamicSymbols()
		for _, s := range ds {
			if s.Section == elf.SHN_UNDEF || s.Value == 0 {
				continue
			}
			name := s.Name
			if i := strings.IndexByte(name, '@'); i >= 0 {
				name = name[:i]
			}
			if isC && name != "munmap" && name != "__errno_location" && !strings.HasPrefix(name, "pthread_") {
				continue
			}
			if _, dup := syms[name]; !dup {
				syms[name] = s.Value + bias
			}
		}
		f.Close()
	}
	s := Symbols{
		PyGILStateEnsure:             syms["PyGILState_Ensure"],
		PyGILStateRelease:            syms["PyGILState_Release"],
		PyRunSimpleString:            syms["PyRun_SimpleString"],
		PyThreadStartNewThread:       syms["PyThread_start_new_thread"],
		PyEvalThreadsInitialized:     syms["PyEval_ThreadsInitialized"],
		PyEvalInitThreads:            syms["PyEval_InitThreads"],
		PyEvalRestoreThread:          syms["PyEval_RestoreThread"],
		PyEvalSaveThread:             syms["PyEval_SaveThread"],
		PyInterpreterStateHead:       syms["PyInterpreterState_Head"],
		PyInterpreterStateThreadHead: syms["PyInterpreterState_ThreadHead"],
		PyAddPendingCall:             syms["Py_AddPendingCall"],
		PyThreadStateCurrent:         syms["_PyThreadState_Current"],
		Munmap:                       syms["munmap"],
		PthreadCreate:                syms["pthread_create"],
		PthreadDetach:                syms["pthread_detach"],
		PthreadAttrInit:              syms["pthread_attr_init"],
		PthreadAttrSetstacksize:      syms["pthread_attr_setstacksize"],
		ErrnoLocation:                syms["__errno_location"],
		InterpreterText:              text,
	}
	if s.PyThreadStartNewThread == 0 || s.PyRunSimpleString == 0 || s.Munmap == 0 {
		t.Fatalf("symbols not resolved: %+v", s)
	}
	return s, syms
}

const fixture = `
import sys, os, time, select, socket
mode = sys.argv[1]
def out(s):
    sys.stdout.write(s + "\n")
    sys.stdout.flush()
try:
    if mode == "sleep":
        out("READY")
        while True:
            time.sleep(0.3)
            out("wake")
    elif mode == "select":
        r, w = os.pipe()
        out("READY")
        while True:
            select.select([r], [], [], 0.3)
            out("wake")
    elif mode == "accept":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        out("READY port=%d" % s.getsockname()[1])
        while True:
            c, _ = s.accept()
            c.close()
            out("accepted")
    elif mode == "recv":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        out("READY port=%d" % s.getsockname()[1])
        while True:
            out("received %r" % (s.recv(10),))
    elif mode == "busy":
        out("READY")
        a = 0
        b = 0
        while True:
            a += 1
            b += 3
            if b != 3 * a:
                out("ERR mismatch %d %d" % (a, b))
            if a % 200000 == 0:
                out("wake %d" % a)
    elif mode == "cbusy":
        # Busy in C code with the GIL released nearly all the time: ctypes
        # calls into libc's memmove over 64 MB, checking each copy.
        import ctypes
        size = 64 << 20
        src = ctypes.create_string_buffer(size)
        dst = ctypes.create_string_buffer(size)
        out("READY")
        n = 0
        while True:
            k = (n * 7919) % size
            src[k] = bytes(bytearray([n % 251]))
            ctypes.memmove(dst, src, size)
            if dst[k] != src[k]:
                out("ERR copy %d" % n)
            n += 1
            if n % 50 == 0:
                out("wake %d" % n)
    elif mode == "smallstack":
        # A thread with a 256 KiB stack blocked in sleep, and the main
        # thread busy in C code (ctypes memmove) like cbusy.
        import ctypes, threading
        threading.stack_size(256 << 10)
        t = threading.Thread(target=time.sleep, args=(1e6,))
        t.daemon = True
        t.start()
        size = 16 << 20
        src = ctypes.create_string_buffer(size)
        dst = ctypes.create_string_buffer(size)
        out("READY")
        while True:
            ctypes.memmove(dst, src, size)
    elif mode == "tracemalloc":
        # tracemalloc on, and the main thread allocating and freeing all
        # the time: it is often stopped inside tracemalloc's hooks, with
        # tracemalloc's table lock held (3.4+).
        import tracemalloc
        tracemalloc.start(25)
        out("READY")
        n = 0
        while True:
            keep = [str(i) * 3 for i in range(1000)]
            del keep
            n += 1
            if n % 200 == 0:
                out("wake %d" % n)
    elif mode == "threads":
        import threading
        t = threading.Thread(target=time.sleep, args=(1e6,))
        t.daemon = True
        t.start()
        out("READY")
        while True:
            time.sleep(0.3)
            out("wake")
except BaseException as e:
    out("ERR %r" % (e,))
    raise
`

// target is the fixture running in one mode on one interpreter.
type target struct {
	*testenv.Target
	t    *testing.T
	pid  int
	mode string
	port int // accept and recv: where the fixture listens
	// dir is a directory the target can write to (markers), as the host
	// and as the target see it.
	dirHost, dirIn string
	markers        int
	// wait bounds waitNew (15 s when zero).
	wait time.Duration
}

// startTarget runs the fixture in the given mode on in and, for the modes
// that block in a system call, waits until its main thread is blocked.
func startTarget(t *testing.T, in testenv.Interp, mode string) *target {
	t.Helper()
	tt := testenv.Start(t, in, fixture, testenv.Args(mode))
	tg := &target{Target: tt, t: t, pid: tt.PID, mode: mode}
	tg.dirHost, tg.dirIn = testenv.TempDir(t, in)
	for _, l := range tt.Stdout() {
		fmt.Sscanf(l, "READY port=%d", &tg.port)
	}
	if (mode == "accept" || mode == "recv") && tg.port == 0 {
		t.Fatalf("fixture %s printed no port: %q", mode, tt.Stdout())
	}
	if mode != "busy" && mode != "cbusy" && mode != "smallstack" && mode != "tracemalloc" {
		testenv.WaitUntil(t, 10*time.Second, "the fixture blocks in a system call", func() bool {
			st, err := taskState(tg.pid, tg.pid)
			return err != nil || st == 'S'
		})
	}
	return tg
}

// marker returns a new file path for markerSrc, as the host and as the
// target see it.
func (tg *target) marker() (host, inside string) {
	tg.markers++
	name := fmt.Sprintf("marker%d", tg.markers)
	return filepath.Join(tg.dirHost, name), tg.dirIn + "/" + name
}

func (tg *target) lines() []string { return tg.Stdout() }

// checkHealthy fails when the fixture reported an error, exited, or has a
// thread stopped or traced.
func (tg *target) checkHealthy() {
	tg.t.Helper()
	for _, l := range tg.lines() {
		if strings.HasPrefix(l, "ERR") {
			tg.t.Fatalf("target %d reported: %s", tg.pid, l)
		}
	}
	if err := tg.Healthy(); err != nil {
		tg.t.Fatal(err)
	}
}

// waitNew waits for n lines starting with prefix printed after the
// first from lines, failing the test if the fixture ends or reports an
// error first.
func (tg *target) waitNew(from int, prefix string, n int) {
	tg.t.Helper()
	wait := tg.wait
	if wait == 0 {
		wait = 15 * time.Second
	}
	testenv.WaitUntil(tg.t, wait, fmt.Sprintf("the %s fixture prints %d more %q lines", tg.mode, n, prefix), func() bool {
		got := 0
		for _, l := range tg.lines()[from:] {
			if strings.HasPrefix(l, "ERR") {
				return true // checkHealthy says which
			}
			if strings.HasPrefix(l, prefix) {
				got++
			}
		}
		done, _ := tg.Exited()
		return done || got >= n
	})
	tg.checkHealthy()
}

// progresses checks that the fixture still does its work after what the
// test did to it: two more wakeups of a sleeping loop, a connection
// accepted, a datagram received, the busy loop counting on. A blocking
// call that failed with EINTR (Python 2.7 does not retry) makes the
// fixture print ERR and exit.
func (tg *target) progresses() {
	tg.t.Helper()
	from := len(tg.lines())
	switch tg.mode {
	case "accept":
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tg.port))
		if err != nil {
			tg.t.Fatalf("connecting to the fixture: %v", err)
		}
		c.Close()
		tg.waitNew(from, "accepted", 1)
	case "recv":
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", tg.port))
		if err != nil {
			tg.t.Fatalf("sending to the fixture: %v", err)
		}
		defer c.Close()
		testenv.WaitUntil(tg.t, 15*time.Second, "the recv fixture receives a datagram", func() bool {
			c.Write([]byte("x")) // UDP: send again until it is seen
			for _, l := range tg.lines()[from:] {
				if strings.HasPrefix(l, "received") || strings.HasPrefix(l, "ERR") {
					return true
				}
			}
			done, _ := tg.Exited()
			return done
		})
		tg.checkHealthy()
	case "busy":
		tg.waitNew(from, "wake", 1)
	default:
		tg.waitNew(from, "wake", 2)
	}
}

func waitFile(t *testing.T, path string, d time.Duration) string {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
	return ""
}

func mapped(pid int, addr uint64) bool {
	maps, err := readMaps(pid)
	if err != nil {
		return false
	}
	for _, m := range maps {
		if addr >= m.lo && addr < m.hi {
			return true
		}
	}
	return false
}

func markerSrc(path string) string {
	return fmt.Sprintf(`
import os, sys
try:
    import _thread as thr
except ImportError:
    import thread as thr
f = open(%q, "w")
f.write("pid=%%d tid=%%d %%s" %% (os.getpid(), thr.get_ident(), sys.version.split()[0]))
f.close()
`, path)
}

// taskState is the scheduler state letter of thread tid of pid.
func taskState(pid, tid int) (byte, error) {
	st, err := procfs.New(pid).TaskStat(tid)
	if err != nil {
		return 0, err
	}
	return st.State, nil
}
