package leak

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed testdata/harness.py
var harnessPy string

// interpreter is one Python the tests run on.
type interpreter struct {
	name string   // "2.7.18", "debian-3.11"
	argv []string // command that starts it
	py2  bool
	// minor is the minor version (7 for 2.7, 11 for 3.11).
	minor int
}

var (
	interpOnce sync.Once
	interps    []interpreter
)

func pyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	if out, err := exec.Command("pyenv", "root").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".pyenv")
}

func parseMinor(name string) (bool, int) {
	var maj, min int
	fmt.Sscanf(strings.TrimPrefix(name, "debian-"), "%d.%d", &maj, &min)
	return maj == 2, min
}

// interpreters lists every interpreter present: the pyenv versions,
// Debian's /usr/bin/python3.11, and the entries of PYGLASS_TEST_PYTHONS
// ("3.14=chroot /srv/sid /usr/bin/python3.14;..." : name=command).
func interpreters(t *testing.T) []interpreter {
	t.Helper()
	interpOnce.Do(func() {
		root := filepath.Join(pyenvRoot(), "versions")
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			py2, minor := parseMinor(e.Name())
			major := "3"
			if py2 {
				major = "2"
			}
			bin := filepath.Join(root, e.Name(), "bin", fmt.Sprintf("python%s.%d", major, minor))
			if _, err := os.Stat(bin); err == nil {
				interps = append(interps, interpreter{name: e.Name(), argv: []string{bin}, py2: py2, minor: minor})
			}
		}
		sort.Slice(interps, func(i, j int) bool {
			a, b := interps[i], interps[j]
			if a.py2 != b.py2 {
				return a.py2
			}
			return a.minor < b.minor
		})
		if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
			interps = append(interps, interpreter{name: "debian-3.11", argv: []string{"/usr/bin/python3.11"}, minor: 11})
		}
		for _, ent := range strings.Split(os.Getenv("PYGLASS_TEST_PYTHONS"), ";") {
			name, cmd, ok := strings.Cut(strings.TrimSpace(ent), "=")
			if !ok || len(strings.Fields(cmd)) == 0 {
				continue
			}
			py2, minor := parseMinor(name)
			interps = append(interps, interpreter{name: name, argv: strings.Fields(cmd), py2: py2, minor: minor})
		}
	})
	if len(interps) == 0 {
		t.Skip("no Python interpreter found (pyenv versions, /usr/bin/python3.11, PYGLASS_TEST_PYTHONS)")
	}
	return interps
}

// forEach runs f as a subtest per interpreter; parallel subtests when par.
func forEach(t *testing.T, par bool, f func(t *testing.T, py interpreter)) {
	for _, py := range interpreters(t) {
		t.Run(py.name, func(t *testing.T) {
			if par {
				t.Parallel()
			}
			f(t, py)
		})
	}
}

// harness is a running interpreter that executes report scripts like
// pyglass's exec does (see testdata/harness.py).
type harness struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     *json.Encoder
	out    *bufio.Reader
	stderr *bytes.Buffer
}

func startHarness(t *testing.T, py interpreter) *harness {
	t.Helper()
	argv := append(append([]string{}, py.argv...), "-c", harnessPy)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cmd: cmd, in: json.NewEncoder(stdin), out: bufio.NewReaderSize(stdout, 1<<20), stderr: new(bytes.Buffer)}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", py.name, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() && h.stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", py.name, h.stderr.String())
		}
	})
	return h
}

func (h *harness) call(req map[string]string) map[string]json.RawMessage {
	h.t.Helper()
	if err := h.in.Encode(req); err != nil {
		h.t.Fatalf("sending to harness: %v (stderr: %s)", err, h.stderr.String())
	}
	line, err := h.out.ReadBytes('\n')
	if err != nil {
		h.t.Fatalf("reading from harness: %v (stderr: %s)", err, h.stderr.String())
	}
	var rep map[string]json.RawMessage
	if err := json.Unmarshal(line, &rep); err != nil {
		h.t.Fatalf("decoding harness reply %q: %v", line, err)
	}
	if e, ok := rep["error"]; ok {
		var msg string
		json.Unmarshal(e, &msg)
		h.t.Fatalf("harness: %s", msg)
	}
	return rep
}

// run executes a report script in the harness and returns its stdout.
func (h *harness) run(script []byte) []byte {
	h.t.Helper()
	rep := h.call(map[string]string{"op": "run", "src": string(script)})
	var out string
	if err := json.Unmarshal(rep["out"], &out); err != nil {
		h.t.Fatal(err)
	}
	return []byte(out)
}

// exec runs code in the harness's namespace and decodes its `result`
// variable into v (when v is not nil).
func (h *harness) exec(code string, v any) {
	h.t.Helper()
	rep := h.call(map[string]string{"op": "exec", "code": code, "name": "fixture.py"})
	if v != nil {
		if err := json.Unmarshal(rep["result"], v); err != nil {
			h.t.Fatalf("decoding result %s: %v", rep["result"], err)
		}
	}
}

// state is the harness's snapshot(): what a report must not change.
type state struct {
	Modules   []string `json:"modules"`
	Debug     int      `json:"debug"`
	Enabled   bool     `json:"enabled"`
	Threshold []int    `json:"threshold"`
	Garbage   int      `json:"garbage"`
	Tracing   *bool    `json:"tracing"`
	Threads   int      `json:"threads"`
	Tasks     int      `json:"tasks"`
	Refcounts []int    `json:"refcounts"`
}

func (s state) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}
