// Package pyproctest starts real Python processes for tests: every
// interpreter present on the machine, running a fixture that reports,
// from inside, the facts tests compare pyglass's findings with.
package pyproctest

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

// Interp is a Python interpreter present on this machine.
type Interp struct {
	Name string // "pyenv-3.12.1", "usr-python3.11"
	Path string
	// Shared is true when the executable uses libpython as a shared library.
	Shared bool
	// Home is the installation prefix for pyenv builds ("" otherwise).
	Home string
}

// PyenvRoot returns the pyenv root, or "".
func PyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	if out, err := exec.Command("pyenv", "root").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".pyenv")
	}
	return ""
}

var binRE = regexp.MustCompile(`^python\d\.\d+$`)

// Interpreters lists the pyenv builds (libpython shared) and the system's
// /usr/bin/python3.X (libpython linked in, on Debian).
func Interpreters() []Interp {
	var out []Interp
	if root := PyenvRoot(); root != "" {
		vers, _ := filepath.Glob(filepath.Join(root, "versions", "*"))
		sort.Strings(vers)
		for _, v := range vers {
			bins, _ := filepath.Glob(filepath.Join(v, "bin", "python*"))
			for _, b := range bins {
				if binRE.MatchString(filepath.Base(b)) {
					out = append(out, Interp{Name: "pyenv-" + filepath.Base(v), Path: b, Shared: true, Home: v})
					break
				}
			}
		}
	}
	bins, _ := filepath.Glob("/usr/bin/python3.*")
	sort.Strings(bins)
	for _, b := range bins {
		if binRE.MatchString(filepath.Base(b)) {
			out = append(out, Interp{Name: "usr-" + filepath.Base(b), Path: b, Shared: false})
		}
	}
	return out
}

// Files returns, for each interpreter testenv finds (the sid root's
// included), the ELF file that holds the interpreter, as the host sees
// it: its libpython when it loads one, else its executable.
func Files() []string {
	var out []string
	for _, in := range testenv.Interpreters() {
		if !in.Shared {
			out = append(out, in.HostPath())
			continue
		}
		home := filepath.Dir(filepath.Dir(in.HostPath()))
		if libs, _ := filepath.Glob(filepath.Join(home, "lib", "libpython*.so.1.0")); len(libs) == 1 {
			out = append(out, libs[0])
		}
	}
	return out
}

// System returns /usr/bin/python3.X (libpython linked in), or skips t.
func System(t testing.TB) Interp {
	t.Helper()
	for _, in := range Interpreters() {
		if !in.Shared {
			return in
		}
	}
	t.Skip("no /usr/bin/python3.X on this machine")
	return Interp{}
}

// Pyenv returns the pyenv build of minor version "3.12" (say), or skips t.
func Pyenv(t testing.TB, minor string) Interp {
	t.Helper()
	for _, in := range Interpreters() {
		if in.Shared && strings.HasPrefix(strings.TrimPrefix(in.Name, "pyenv-"), minor+".") {
			return in
		}
	}
	t.Skip("no pyenv Python " + minor + " on this machine")
	return Interp{}
}

// Fixture is Python 2/3 source that prints one JSON line of facts seen
// from inside, then blocks reading stdin until it is closed.
const Fixture = `
import ctypes, json, os, sys
data = ("pyglass-live-%d" % os.getpid()).encode("ascii")
def addr(f):
    return ctypes.cast(f, ctypes.c_void_p).value
try:
    runtime = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
except ValueError:
    runtime = 0
maps = open("/proc/self/maps").read()
shared = "/libpython" in maps
info = dict(
    pid=os.getpid(),
    version="%d.%d.%d" % tuple(sys.version_info[:3]),
    level=sys.version_info[3],
    serial=sys.version_info[4],
    shared=shared,
    run=addr(ctypes.pythonapi.PyRun_SimpleString),
    munmap=addr(ctypes.CDLL(None).munmap),
    pthread=[addr(getattr(ctypes.CDLL(None), n)) for n in
             ("pthread_create", "pthread_detach", "pthread_attr_init", "pthread_attr_setstacksize")],
    runtime=runtime,
    data_id=id(data),
    data_addr=ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value,
    data=data.decode("ascii"),
)
sys.stdout.write(json.dumps(info) + "\n")
sys.stdout.flush()
sys.stdin.read()
`

// Info is what the fixture reports.
type Info struct {
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Level   string `json:"level"`
	Serial  int    `json:"serial"`
	Shared  bool   `json:"shared"` // a libpython is in /proc/self/maps
	Run     uint64 `json:"run"`
	Munmap  uint64 `json:"munmap"`
	// Pthread: pthread_create, pthread_detach, pthread_attr_init,
	// pthread_attr_setstacksize (dlsym of the default versions).
	Pthread  [4]uint64 `json:"pthread"`
	Runtime  uint64    `json:"runtime"`
	DataID   uint64    `json:"data_id"`
	DataAddr uint64    `json:"data_addr"`
	Data     string    `json:"data"`
}

// Target is a running fixture.
type Target struct {
	Cmd   *exec.Cmd
	Info  Info
	stdin io.WriteCloser
}

// PID returns the process id of the started command (for wrappers such
// as unshare, not the Python's; use Info.PID inside namespaces with care).
func (tg *Target) PID() int { return tg.Cmd.Process.Pid }

// Start runs cmd (whose Python runs Fixture, e.g. with "-c"), waits for
// the fixture's report and stops the process when the test ends.
func Start(t testing.TB, cmd *exec.Cmd) *Target {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	tg := &Target{Cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			cmd.Process.Kill()
			t.Fatalf("%v printed nothing; stderr: %s", cmd.Args, stderr.String())
		}
		if err := json.Unmarshal([]byte(line), &tg.Info); err != nil {
			t.Fatalf("fixture output %q: %v", line, err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%v did not report within 30s; stderr: %s", cmd.Args, stderr.String())
	}
	return tg
}

// StartInterp runs the fixture with interpreter in.
func StartInterp(t testing.TB, in Interp) *Target {
	t.Helper()
	return Start(t, exec.Command(in.Path, "-c", Fixture))
}
