// Package testenv is the shared test infrastructure of pyglass: it finds the
// Python interpreters present on the machine, runs a test once per
// interpreter while recording which were covered and which were skipped (and
// why), starts fixture Python programs as live targets (optionally as
// another user, in a private mount namespace or in a new PID namespace) and
// builds the pyglass binary once per test binary.
//
// A typical test:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestStacks(t *testing.T) {
//		testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
//			tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
//			// ... inspect tg.PID ...
//			if err := tg.Healthy(); err != nil {
//				t.Fatal(err)
//			}
//		})
//	}
//
// Environment variables:
//   - PYGLASS_PYTHONS: comma-separated labels (e.g. "2.7,3.12,3.14-chroot")
//     restricting Interpreters; the others are reported as missing.
//   - PYGLASS_SID_ROOT: the Debian sid root holding python3.14 and 3.15
//     (default /var/cache/pyglass/sid-root, built by scripts/sid-root.sh).
//   - PYGLASS_COVERAGE_FILE: when set, Main appends its coverage records
//     there (tab-separated) instead of printing a summary; .ci/run uses it
//     to print one summary for the whole run.
package testenv

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Interp is one Python interpreter present on the machine.
type Interp struct {
	// Label names the interpreter in subtest names and summaries:
	// "2.7", "3.12" (pyenv builds), "3.11-debian", "3.14-chroot",
	// "3.14-pie-chroot", "3.15-chroot", "3.15d-chroot".
	Label string
	// Major and Minor are the language version, e.g. 3 and 12.
	Major, Minor int
	// Path is the interpreter binary: a host path, or a path inside
	// Chroot when Chroot is set.
	Path string
	// Chroot is the root directory the interpreter must run in, or "".
	Chroot string
	// Shared reports whether the binary loads libpython as a shared
	// library (false: libpython is linked into the executable).
	Shared bool
	// Debug reports a Py_DEBUG build (Debian's python3.Xd).
	Debug bool
}

// String returns the label.
func (in Interp) String() string { return in.Label }

// Version returns "MAJOR.MINOR", e.g. "3.12".
func (in Interp) Version() string { return fmt.Sprintf("%d.%d", in.Major, in.Minor) }

// AtLeast reports whether the interpreter's version is major.minor or newer.
func (in Interp) AtLeast(major, minor int) bool {
	return in.Major > major || (in.Major == major && in.Minor >= minor)
}

// HostPath returns the interpreter binary's path as seen from the host.
func (in Interp) HostPath() string {
	if in.Chroot == "" {
		return in.Path
	}
	return filepath.Join(in.Chroot, in.Path)
}

// Command returns a command that runs the interpreter with args. For a
// chroot interpreter it runs, as root, in a new mount namespace with /proc
// mounted inside the root, as Start does. Paths in args are the
// interpreter's view.
func (in Interp) Command(args ...string) *exec.Cmd {
	if in.Chroot == "" {
		return exec.Command(in.Path, args...)
	}
	sh := "mount -t proc proc " + shellQuote(filepath.Join(in.Chroot, "proc")) + ` && exec chroot "$@"`
	return exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", sh, "sh", in.Chroot, in.Path}, args...)...)
}

// Absent is an interpreter the test suite expects but could not find.
type Absent struct {
	// Label is the label the interpreter would have had.
	Label string
	// Reason says why it is absent.
	Reason string
}

// pyenvMinors are the pyenv builds the project expects.
var pyenvMinors = []string{"2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"}

// sidInterps are the interpreters the tests expect in the Debian sid root
// (scripts/sid-root.sh installs them): label, path inside the root, minor
// version, Py_DEBUG build, and the package that provides the file.
var sidInterps = []struct {
	label, path string
	minor       int
	debug       bool
	pkg         string
}{
	// python3.14-nopie diverts /usr/bin/python3.14 to python3.14-pie and
	// installs its non-PIE build in its place.
	{"3.14-chroot", "/usr/bin/python3.14", 14, false, "python3.14"},
	{"3.14-pie-chroot", "/usr/bin/python3.14-pie", 14, false, "python3.14-nopie"},
	{"3.15-chroot", "/usr/bin/python3.15", 15, false, "python3.15"},
	{"3.15d-chroot", "/usr/bin/python3.15d", 15, true, "python3.15-dbg"},
}

const (
	debianLabel = "3.11-debian"
	debianPath  = "/usr/bin/python3.11"
	// DefaultSidRoot is where scripts/sid-root.sh builds the Debian sid
	// root with python3.14 unless PYGLASS_SID_ROOT says otherwise.
	DefaultSidRoot = "/var/cache/pyglass/sid-root"
)

var (
	discoverOnce sync.Once
	found        []Interp
	absent       []Absent
)

// Interpreters returns every interpreter present, in version order (pyenv
// builds, then Debian's /usr/bin/python3.11, then 3.14 (non-PIE and PIE),
// 3.15 and 3.15's debug build in the sid chroot),
// restricted to PYGLASS_PYTHONS when that is set. The result is computed
// once per process.
func Interpreters() []Interp {
	discoverOnce.Do(discover)
	return append([]Interp(nil), found...)
}

// Missing returns the expected interpreters that Interpreters does not
// return, each with the reason.
func Missing() []Absent {
	discoverOnce.Do(discover)
	return append([]Absent(nil), absent...)
}

// Lookup returns the interpreter with the given label, if present.
func Lookup(label string) (Interp, bool) {
	for _, in := range Interpreters() {
		if in.Label == label {
			return in, true
		}
	}
	return Interp{}, false
}

// PyenvRoot returns pyenv's root: `pyenv root`, else $PYENV_ROOT, else
// /root/.pyenv. It returns "" when none is a directory.
func PyenvRoot() string {
	var cands []string
	if out, err := exec.Command("pyenv", "root").Output(); err == nil {
		cands = append(cands, strings.TrimSpace(string(out)))
	}
	cands = append(cands, os.Getenv("PYENV_ROOT"), "/root/.pyenv")
	for _, c := range cands {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(c, "versions")); err == nil && fi.IsDir() {
			return c
		}
	}
	return ""
}

// SidRoot returns the directory of the Debian sid root ($PYGLASS_SID_ROOT
// or DefaultSidRoot), whether or not it exists.
func SidRoot() string {
	if r := os.Getenv("PYGLASS_SID_ROOT"); r != "" {
		return r
	}
	return DefaultSidRoot
}

func discover() {
	var all []Interp
	var miss []Absent

	// pyenv builds: versions/X.Y.Z/bin/pythonX.Y.
	root := PyenvRoot()
	byMinor := map[string][]Interp{}
	if root != "" {
		dirs, _ := filepath.Glob(filepath.Join(root, "versions", "*"))
		sort.Strings(dirs)
		for _, d := range dirs {
			major, minor, ok := parseVersion(filepath.Base(d))
			if !ok {
				continue
			}
			mm := fmt.Sprintf("%d.%d", major, minor)
			bin := filepath.Join(d, "bin", "python"+mm)
			if !isExec(bin) {
				continue
			}
			byMinor[mm] = append(byMinor[mm], Interp{
				Label: mm, Major: major, Minor: minor, Path: bin,
				Shared: linksLibpython(bin),
			})
		}
	}
	var minors []string
	for mm := range byMinor {
		minors = append(minors, mm)
	}
	sort.Slice(minors, func(i, j int) bool { return versionLess(minors[i], minors[j]) })
	for _, mm := range minors {
		ins := byMinor[mm]
		if len(ins) > 1 { // several patch releases: label each by its full version
			for i := range ins {
				ins[i].Label = filepath.Base(filepath.Dir(filepath.Dir(ins[i].Path)))
			}
		}
		all = append(all, ins...)
	}
	for _, mm := range pyenvMinors {
		if len(byMinor[mm]) > 0 {
			continue
		}
		reason := "pyenv not found (no `pyenv root`, $PYENV_ROOT or /root/.pyenv)"
		if root != "" {
			reason = fmt.Sprintf("no %s/versions/%s.*/bin/python%s", root, mm, mm)
		}
		miss = append(miss, Absent{Label: mm, Reason: reason})
	}

	// Debian's python3.11: libpython linked into a non-PIE executable.
	if isExec(debianPath) {
		all = append(all, Interp{Label: debianLabel, Major: 3, Minor: 11, Path: debianPath, Shared: linksLibpython(debianPath)})
	} else {
		miss = append(miss, Absent{Label: debianLabel, Reason: debianPath + " not installed (apt-get install python3.11)"})
	}

	// Python 3.14 and 3.15 in the Debian sid root.
	sid := SidRoot()
	for _, si := range sidInterps {
		bin := filepath.Join(sid, si.path)
		if !isExec(bin) {
			miss = append(miss, Absent{Label: si.label, Reason: "no " + bin + " (package " + si.pkg + "; build the root with scripts/sid-root.sh)"})
			continue
		}
		all = append(all, Interp{Label: si.label, Major: 3, Minor: si.minor, Path: si.path, Chroot: sid, Shared: linksLibpython(bin), Debug: si.debug})
	}

	if sel := os.Getenv("PYGLASS_PYTHONS"); sel != "" {
		want := map[string]bool{}
		for _, l := range strings.Split(sel, ",") {
			want[strings.TrimSpace(l)] = true
		}
		var kept []Interp
		for _, in := range all {
			if want[in.Label] {
				kept = append(kept, in)
			} else {
				miss = append(miss, Absent{Label: in.Label, Reason: "excluded by PYGLASS_PYTHONS=" + sel})
			}
		}
		all = kept
	}
	found, absent = all, miss
}

// parseVersion parses "X.Y" or "X.Y.Z" (pyenv directory names); names with
// other suffixes (dev builds, virtualenvs) are rejected.
func parseVersion(s string) (major, minor int, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return 0, 0, false
		}
		n[i] = v
	}
	return n[0], n[1], true
}

func versionLess(a, b string) bool {
	am, an, _ := parseVersion(a)
	bm, bn, _ := parseVersion(b)
	if am != bm {
		return am < bm
	}
	return an < bn
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// linksLibpython reports whether the ELF file at p has a DT_NEEDED entry
// for libpython.
func linksLibpython(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return false
	}
	for _, l := range libs {
		if strings.HasPrefix(l, "libpython") {
			return true
		}
	}
	return false
}
