package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pyglass/pyglass/internal/testenv"
)

// forker is a parent that forks two children, the first of which forks a
// grandchild: a master and its workers. It prints their PIDs.
const forker = `import os, sys, time
def child(grand):
    if grand:
        g = os.fork()
        if g == 0:
            time.sleep(600)
            os._exit(0)
        sys.stdout.write("GRAND %d\n" % g)
        sys.stdout.flush()
    time.sleep(600)
    os._exit(0)
kids = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        child(i == 0)
    kids.append(pid)
sys.stdout.write("KIDS %d %d\n" % tuple(kids))
sys.stdout.flush()
time.sleep(0.5)
print("READY")
sys.stdout.flush()
time.sleep(600)
`

type psEntry struct {
	PID      int        `json:"pid"`
	PPID     int        `json:"ppid"`
	Cmdline  []string   `json:"cmdline"`
	Children []*psEntry `json:"children"`
}

// TestPSTree: a master and its workers (real forked processes) are listed
// with their PPIDs, filtered by NAME, nested by --tree (text and JSON);
// a command line with newlines stays on one escaped line, is never cut
// when piped, and is cut to the width of a terminal.
func TestPSTree(t *testing.T) {
	in := anyInterp(t, "3.12", "3.11-debian", "3.13")
	marker := fmt.Sprintf("pyglass-ps-test-%d", time.Now().UnixNano())
	long := strings.Repeat("x", 300)
	tg := testenv.Start(t, in, forker, testenv.Args(marker, "two\nlines\x1b[2J", long))
	var kid1, kid2, grand int
	for deadline := time.Now().Add(10 * time.Second); (kid1 == 0 || grand == 0) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, l := range tg.Stdout() {
			fmt.Sscanf(l, "KIDS %d %d", &kid1, &kid2)
			fmt.Sscanf(l, "GRAND %d", &grand)
		}
	}
	if kid1 == 0 || kid2 == 0 || grand == 0 {
		t.Fatalf("the target did not report its children: %q", tg.Stdout())
	}

	r := run(t, nil, "ps", "--json", marker)
	want(t, r, 0)
	var flat []psEntry
	if err := json.Unmarshal([]byte(r.Stdout), &flat); err != nil {
		t.Fatalf("ps --json: %v\n%s", err, r.Stdout)
	}
	ppid := map[int]int{}
	for _, e := range flat {
		ppid[e.PID] = e.PPID
	}
	wantPPID := map[int]int{kid1: tg.PID, kid2: tg.PID, grand: kid1}
	if len(flat) != 4 || ppid[kid1] != tg.PID || ppid[kid2] != tg.PID || ppid[grand] != kid1 {
		t.Fatalf("ps --json %s: want %d and its children %v, got %s", marker, tg.PID, wantPPID, r.Stdout)
	}

	r = run(t, nil, "ps", "--json", "--tree", marker)
	want(t, r, 0)
	var roots []*psEntry
	if err := json.Unmarshal([]byte(r.Stdout), &roots); err != nil {
		t.Fatalf("ps --json --tree: %v\n%s", err, r.Stdout)
	}
	if len(roots) != 1 || roots[0].PID != tg.PID || len(roots[0].Children) != 2 ||
		roots[0].Children[0].PID != min(kid1, kid2) || roots[0].Children[1].PID != max(kid1, kid2) {
		t.Fatalf("ps --json --tree: want %d with children %d and %d, got %s", tg.PID, kid1, kid2, r.Stdout)
	}
	for _, c := range roots[0].Children {
		if (c.PID == kid1) != (len(c.Children) == 1 && c.Children[0].PID == grand && len(c.Children[0].Children) == 0) {
			t.Fatalf("ps --json --tree: want %d under %d only, got %s", grand, kid1, r.Stdout)
		}
	}

	// Text, piped: one line per process, the command escaped and whole.
	r = run(t, nil, "ps", "--tree", marker)
	want(t, r, 0)
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "PID") || !strings.Contains(lines[0], "PPID") {
		t.Fatalf("ps --tree %s: want a header and 4 lines, got\n%s", marker, r.Stdout)
	}
	order := []int{tg.PID, kid1, grand, kid2}
	if kid2 < kid1 {
		order = []int{tg.PID, kid2, kid1, grand}
	}
	wantPPID[tg.PID] = ppidOf(t, tg.PID)
	for i, pid := range order {
		f := strings.Fields(lines[i+1])
		if len(f) < 2 || f[0] != strconv.Itoa(pid) || f[1] != strconv.Itoa(wantPPID[pid]) {
			t.Fatalf("ps --tree line %d: want PID %d PPID %d, got %q", i+1, pid, wantPPID[pid], lines[i+1])
		}
		if !strings.Contains(lines[i+1], `two\nlines\x1b[2J `+long) {
			t.Fatalf("ps --tree line %d: the command line is not escaped or is cut: %q", i+1, lines[i+1])
		}
	}
	if !strings.Contains(lines[1], "  "+in.Path) || !strings.Contains(lines[2], "─ ") || !strings.Contains(lines[3], "└─ ") {
		t.Fatalf("ps --tree: want the children indented under their parent, got\n%s", r.Stdout)
	}

	// On an 80-column terminal, every line fits.
	cmd := exec.Command(testenv.BuildPyglass(t), "ps", marker)
	f, err := startOnPty(cmd, 40, 80)
	if err != nil {
		t.Fatalf("starting pyglass on a pseudo-terminal: %v", err)
	}
	var out bytes.Buffer
	io.Copy(&out, f) // ends with EIO when pyglass exits
	f.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pyglass ps on a terminal: %v\n%s", err, out.String())
	}
	tlines := strings.Split(strings.TrimRight(strings.ReplaceAll(out.String(), "\r\n", "\n"), "\n"), "\n")
	if len(tlines) != 5 {
		t.Fatalf("pyglass ps on a terminal: want 5 lines, got %q", out.String())
	}
	for _, l := range tlines {
		if utf8.RuneCountInString(l) > 80 {
			t.Fatalf("pyglass ps on an 80-column terminal printed a %d-column line: %q", utf8.RuneCountInString(l), l)
		}
	}
	if !strings.HasSuffix(tlines[1], "…") {
		t.Fatalf("pyglass ps on a terminal: want the long command cut with …, got %q", tlines[1])
	}
}

// ppidOf is the parent of pid, from /proc.
func ppidOf(t *testing.T, pid int) int {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	n, _ := strconv.Atoi(f[1])
	return n
}
