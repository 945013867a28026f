package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Status is the outcome of one test on one interpreter.
type Status string

// Outcomes recorded by ForEach.
const (
	Covered Status = "covered"
	Skipped Status = "skipped"
	Failed  Status = "failed"
)

// record is one test's outcome on one interpreter.
type record struct {
	Label, Test string
	Status      Status
	Reason      string
}

var (
	recMu   sync.Mutex
	records []record
	reasons = map[string]string{} // subtest name -> reason given to Skipf
)

// ForEach runs fn as a subtest named by the label of every interpreter
// present, and, for every expected interpreter that is absent, a subtest
// that skips with the reason. Each outcome (covered, skipped with its
// reason, failed) is recorded for the summary Main prints. Subtests run one
// after the other.
func ForEach(t *testing.T, fn func(t *testing.T, in Interp)) {
	t.Helper()
	forEach(t, false, fn)
}

// ForEachParallel is ForEach with the subtests run in parallel.
func ForEachParallel(t *testing.T, fn func(t *testing.T, in Interp)) {
	t.Helper()
	forEach(t, true, fn)
}

func forEach(t *testing.T, parallel bool, fn func(t *testing.T, in Interp)) {
	t.Helper()
	for _, in := range Interpreters() {
		t.Run(in.Label, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			// A cleanup, not a defer: it runs after fn's parallel
			// subtests have ended too, whose failures then count.
			t.Cleanup(func() {
				st, why := Covered, ""
				switch {
				case t.Failed():
					st = Failed
				case t.Skipped():
					st = Skipped
					recMu.Lock()
					why = reasons[t.Name()]
					recMu.Unlock()
					if why == "" {
						why = "skipped without testenv.Skipf (see the test log)"
					}
				}
				addRecord(record{Label: in.Label, Test: topName(t.Name()), Status: st, Reason: why})
				// Nested subtests that skipped with Skipf: "T/label/sub".
				recMu.Lock()
				var nested []record
				for name, r := range reasons {
					if sub, ok := strings.CutPrefix(name, t.Name()+"/"); ok {
						nested = append(nested, record{Label: in.Label, Test: topName(t.Name()) + "/" + sub, Status: Skipped, Reason: r})
					}
				}
				recMu.Unlock()
				for _, r := range nested {
					addRecord(r)
				}
			})
			fn(t, in)
		})
	}
	for _, a := range Missing() {
		t.Run(a.Label, func(t *testing.T) {
			addRecord(record{Label: a.Label, Test: topName(t.Name()), Status: Skipped, Reason: "absent: " + a.Reason})
			t.Skip("interpreter absent: " + a.Reason)
		})
	}
}

// Skipf skips t like t.Skipf and records the reason in the coverage
// summary. Use it instead of t.Skip inside ForEach.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	recMu.Lock()
	reasons[t.Name()] = msg
	recMu.Unlock()
	t.Skip(msg)
}

func addRecord(r record) {
	recMu.Lock()
	records = append(records, r)
	recMu.Unlock()
}

// topName strips the interpreter label (the last element) from a subtest
// name: "TestX/sub/3.12" -> "TestX/sub".
func topName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return name
}

// Main runs the tests and then reports which interpreters were covered and
// which were skipped and why. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// With PYGLASS_COVERAGE_FILE set the records are appended to that file
// (for .ci/run's summary). Otherwise the summary goes to stderr; since
// `go test ./...` hides the output of passing packages, Main then writes it
// to the go command's own stderr when it is the parent process.
func Main(m *testing.M) {
	code := m.Run()
	cleanupBuild()
	recMu.Lock()
	recs := append([]record(nil), records...)
	recMu.Unlock()
	if len(recs) > 0 {
		if path := os.Getenv("PYGLASS_COVERAGE_FILE"); path != "" {
			if err := appendRecords(path, recs); err != nil {
				fmt.Fprintf(os.Stderr, "testenv: writing coverage file: %v\n", err)
			}
		} else {
			w, closeFn := summaryWriter()
			io.WriteString(w, summary(pkgName(), recs))
			closeFn()
		}
	}
	os.Exit(code)
}

func pkgName() string {
	return strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
}

// summaryWriter returns the go command's stderr when the test binary runs
// under `go test` without -v (whose output would otherwise be dropped for
// a passing package), else os.Stderr.
func summaryWriter() (io.Writer, func()) {
	if testing.Verbose() {
		return os.Stderr, func() {}
	}
	ppid := os.Getppid()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if err != nil || filepath.Base(exe) != "go" {
		return os.Stderr, func() {}
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", ppid), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return os.Stderr, func() {}
	}
	return f, func() { f.Close() }
}

func appendRecords(path string, recs []record) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	var b strings.Builder
	pkg := pkgName()
	for _, r := range recs {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\n", r.Label, r.Status, pkg, r.Test, oneLine(r.Reason))
	}
	// One write so that parallel packages do not interleave lines.
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func oneLine(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ").Replace(s)
}

// summary formats coverage records (label, status, test, reason) as the
// human-readable report that Main prints: per interpreter label, the tests
// that covered it, skipped it (with reasons) and failed on it.
func summary(title string, recs []record) string {
	type agg struct {
		covered, failed []string
		skipped         map[string][]string // reason -> tests
	}
	by := map[string]*agg{}
	for _, r := range recs {
		a := by[r.Label]
		if a == nil {
			a = &agg{skipped: map[string][]string{}}
			by[r.Label] = a
		}
		switch r.Status {
		case Covered:
			a.covered = append(a.covered, r.Test)
		case Failed:
			a.failed = append(a.failed, r.Test)
		default:
			a.skipped[r.Reason] = append(a.skipped[r.Reason], r.Test)
		}
	}
	labels := make([]string, 0, len(by))
	for l := range by {
		labels = append(labels, l)
	}
	sort.Slice(labels, func(i, j int) bool { return labelLess(labels[i], labels[j]) })

	var b strings.Builder
	fmt.Fprintf(&b, "=== pyglass interpreter coverage: %s\n", title)
	var notCovered []string
	for _, l := range labels {
		a := by[l]
		nskip := 0
		for _, ts := range a.skipped {
			nskip += len(ts)
		}
		fmt.Fprintf(&b, "  %-16s covered %d, skipped %d, failed %d\n", l, len(a.covered), nskip, len(a.failed))
		if len(a.covered) == 0 {
			notCovered = append(notCovered, l)
		}
		rs := make([]string, 0, len(a.skipped))
		for r := range a.skipped {
			rs = append(rs, r)
		}
		sort.Strings(rs)
		for _, r := range rs {
			fmt.Fprintf(&b, "      skipped: %s [%s]\n", r, testList(a.skipped[r]))
		}
		if len(a.failed) > 0 {
			fmt.Fprintf(&b, "      FAILED: %s\n", testList(a.failed))
		}
	}
	if len(notCovered) > 0 {
		fmt.Fprintf(&b, "  NOT COVERED by any test: %s\n", strings.Join(notCovered, " "))
	}
	return b.String()
}

func testList(ts []string) string {
	seen := map[string]bool{}
	var u []string
	for _, t := range ts {
		if !seen[t] {
			seen[t] = true
			u = append(u, t)
		}
	}
	sort.Strings(u)
	if len(u) > 6 {
		return strings.Join(u[:6], " ") + fmt.Sprintf(" and %d more", len(u)-6)
	}
	return strings.Join(u, " ")
}

// labelLess orders labels by version, then by suffix ("3.11" <
// "3.11-debian"; a build letter is part of the suffix: "3.15-chroot" <
// "3.15d-chroot" < "3.16").
func labelLess(a, b string) bool {
	av, as := splitLabel(a)
	bv, bs := splitLabel(b)
	if av != bv {
		if _, _, ok := parseVersion(av); ok {
			if _, _, ok := parseVersion(bv); ok {
				return versionLess3(av, bv)
			}
		}
		return av < bv
	}
	return as < bs
}

// splitLabel splits a label into its version and the rest: "3.15d-chroot"
// gives "3.15" and "d-chroot".
func splitLabel(l string) (version, rest string) {
	i := strings.IndexFunc(l, func(r rune) bool { return r != '.' && (r < '0' || r > '9') })
	if i < 0 {
		return l, ""
	}
	return l[:i], l[i:]
}

func versionLess3(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		var x, y int
		fmt.Sscan(pa[i], &x)
		fmt.Sscan(pb[i], &y)
		if x != y {
			return x < y
		}
	}
	return len(pa) < len(pb)
}

// SummarizeFile reads the records Main appended to a PYGLASS_COVERAGE_FILE
// and returns the summary of the whole run (used by .ci/run through
// `go run ./internal/testenv/summary`).
func SummarizeFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening coverage file: %w", err)
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p := strings.SplitN(sc.Text(), "\t", 5)
		if len(p) != 5 {
			continue
		}
		recs = append(recs, record{Label: p[0], Status: Status(p[1]), Test: p[2] + "." + p[3], Reason: p[4]})
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading coverage file: %w", err)
	}
	return summary("all packages", recs), nil
}
