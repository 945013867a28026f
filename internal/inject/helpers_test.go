package inject

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// interpreters returns the Python interpreters present on this machine.
func interpreters(t *testing.T) map[string]string {
	t.Helper()
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		root = filepath.Join(os.Getenv("HOME"), ".pyenv")
	}
	out := map[string]string{}
	for _, v := range []string{"2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"} {
		name := "python3"
		if strings.HasPrefix(v, "2.") {
			name = "python2"
		}
		p := filepath.Join(root, "versions", v, "bin", name)
		if _, err := os.Stat(p); err == nil {
			out[v] = p
		}
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		out["debian-3.11"] = "/usr/bin/python3.11"
	}
	if len(out) == 0 {
		t.Skip("no Python interpreter found (pyenv versions or /usr/bin/python3.11)")
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

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
		f, err := elf.Open(fmt.Sprintf("/proc/%d/root%s", pid, m.path))
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
			if isC && name != "munmap" && name != "__errno_location" {
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
		ErrnoLocation:                syms["__errno_location"],
		InterpreterText:              text,
	}
	if s.PyThreadStartNewThread == 0 || s.PyRunSimpleString == 0 || s.Munmap == 0 {
		t.Fatalf("symbols not resolved: %+v", s)
	}
	return s
}

const fixture = `
import sys, os, time, select, socket
mode = sys.argv[1]
def out(s):
    sys.stdout.write(s + "\n")
    sys.stdout.flush()
try:
    if mode == "sleep":
        out("ready")
        while True:
            time.sleep(0.3)
            out("wake")
    elif mode == "select":
        r, w = os.pipe()
        out("ready")
        while True:
            select.select([r], [], [], 0.3)
            out("wake")
    elif mode == "accept":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        out("ready")
        while True:
            s.accept()
            out("ERR accepted")
    elif mode == "recv":
        a, b = socket.socketpair()
        out("ready")
        while True:
            a.recv(10)
            out("ERR received")
    elif mode == "busy":
        out("ready")
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
        out("ready")
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
    elif mode == "threads":
        import threading
        t = threading.Thread(target=time.sleep, args=(1e6,))
        t.daemon = True
        t.start()
        out("ready")
        while True:
            time.sleep(0.3)
            out("wake")
except BaseException as e:
    out("ERR %r" % (e,))
    raise
`

type target struct {
	t    *testing.T
	cmd  *exec.Cmd
	pid  int
	mu   sync.Mutex
	out  []string
	done chan struct{}
}

// startTarget runs the fixture in the given mode and waits for "ready".
func startTarget(t *testing.T, python, mode string) *target {
	t.Helper()
	script := filepath.Join(t.TempDir(), "fixture.py")
	if err := os.WriteFile(script, []byte(fixture), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-u", script, mode)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{t: t, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(tg.done)
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			tg.mu.Lock()
			tg.out = append(tg.out, sc.Text())
			tg.mu.Unlock()
			if first {
				first = false
				close(ready)
			}
		}
	}()
	// Do not call cmd.Wait before the end: a concurrent wait on our child
	// could consume its ptrace stops.
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-tg.done
		cmd.Wait()
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %s: fixture not ready", python, mode)
	}
	time.Sleep(50 * time.Millisecond) // let it block
	return tg
}

func (tg *target) lines() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]string(nil), tg.out...)
}

// checkHealthy fails when the fixture reported an error or exited.
func (tg *target) checkHealthy() {
	tg.t.Helper()
	for _, l := range tg.lines() {
		if strings.HasPrefix(l, "ERR") {
			tg.t.Fatalf("target %d reported: %s", tg.pid, l)
		}
	}
	select {
	case <-tg.done:
		tg.t.Fatalf("target %d exited; output: %q", tg.pid, tg.lines())
	default:
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
