package leak

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
)

//go:embed testdata/harness.py
var harnessPy string

// interpreter is one Python the tests run on.
type interpreter struct {
	name string   // the testenv label: "2.7", "3.11-debian", "3.14-chroot"
	argv []string // command that starts it (a chroot's included)
	py2  bool
	// minor is the minor version (7 for 2.7, 11 for 3.11).
	minor int
}

// forEach runs f as a subtest per interpreter testenv finds (pyenv
// builds, Debian's python3.11, 3.14 in the sid root), in parallel when
// par; absent interpreters are skipped subtests, and every outcome goes
// to the coverage summary.
func forEach(t *testing.T, par bool, f func(t *testing.T, py interpreter)) {
	run := func(t *testing.T, in testenv.Interp) {
		f(t, interpreter{name: in.Label, argv: in.Command().Args, py2: in.Major == 2, minor: in.Minor})
	}
	if par {
		testenv.ForEachParallel(t, run)
	} else {
		testenv.ForEach(t, run)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }

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
