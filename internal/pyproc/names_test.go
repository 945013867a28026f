package pyproc

import (
	"regexp"
	"strconv"
	"testing"
)

// The regular expressions the matchers of names.go replace: the oracles
// the matchers are checked against.
var (
	libpythonOracle = regexp.MustCompile(`^libpython(\d)\.(\d{1,2})[a-z]*\.so`)
	nameOracle      = regexp.MustCompile(`python(\d)\.(\d{1,2})`)
	tailOracle      = regexp.MustCompile(`(\d\.\d{1,2}\.\d{1,2}(?:(?:a|b|rc)\d{1,2}|\+)?)$`)
	versionOracle   = regexp.MustCompile(`^(\d)\.(\d{1,2})\.(\d{1,2})(?:(a|b|rc)(\d{1,2})|\+)?$`)
	libcOracle      = regexp.MustCompile(`^(libc\.so\.\d+|libc-[\d.]+\.so|libc\.musl-.*\.so.*|ld-musl-.*\.so.*)$`)
	pthreadOracle   = regexp.MustCompile(`^(libpthread\.so\.\d+|libpthread-[\d.]+\.so)$`)
)

// nameSeeds are file names and version strings met in the field, and
// near misses.
var nameSeeds = []string{
	"libpython3.11.so.1.0", "libpython2.7.so", "libpython3.13d.so.1.0", "libpython3.14t.so", "libpython3.so",
	"libpython3.1", "libpython3.123.so", "libpython.so", "libpythonX.Y.so", "python3.11", "python2.7",
	"python3", "pythonpython3.9", "python3.x", "uwsgi", "libc.so.6", "libc-2.31.so", "libc-.so", "libc-..so",
	"libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1", "ld-musl-.so", "libc.so.", "libc.so.6a", "libpthread.so.0",
	"libpthread-2.28.so", "libpthread-2.28.so.1", "3.12.1", "3.14.0b2", "3.13.0rc1", "3.9.18+", "2.7.18",
	"3.15.0a10", "3.15.0a100", "3.1.1", "13.11.1", "/opt/python/3.9.18", "3.11", "3.11.", "3.11.1c1",
	"3.11.1rc", "x3.11.1", "3.11.1+x", "1.2.3a4", "3.10.12rc12", "", "3.", "3.1.1.1.1", "33.3.3.3",
}

func checkNames(t *testing.T, s string) {
	if got, want := isLibpython(s), libpythonOracle.MatchString(s); got != want {
		t.Errorf("isLibpython(%q) = %v, the regexp says %v", s, got, want)
	}
	major, minor, ok := nameVersion(s)
	if m := nameOracle.FindStringSubmatch(s); (m != nil) != ok || ok && (strconv.Itoa(major) != m[1] || strconv.Itoa(minor) != trimZeros(m[2])) {
		t.Errorf("nameVersion(%q) = %d, %d, %v; the regexp says %q", s, major, minor, ok, m)
	}
	want := -1
	if loc := tailOracle.FindStringIndex(s); loc != nil {
		want = loc[0]
	}
	if got := versionTail(s); got != want {
		t.Errorf("versionTail(%q) = %d, the regexp says %d", s, got, want)
	}
	parts, ok := splitVersion(s)
	m := versionOracle.FindStringSubmatch(s)
	if (m != nil) != ok {
		t.Errorf("splitVersion(%q) ok = %v, the regexp says %q", s, ok, m)
	} else if ok {
		got := []string{strconv.Itoa(parts.major), strconv.Itoa(parts.minor), strconv.Itoa(parts.micro), parts.level, ""}
		if parts.level != "" {
			got[4] = strconv.Itoa(parts.serial)
		}
		wantParts := []string{m[1], trimZeros(m[2]), trimZeros(m[3]), m[4], trimZeros(m[5])}
		for i := range got {
			if got[i] != wantParts[i] {
				t.Errorf("splitVersion(%q) = %q, the regexp says %q", s, got, wantParts)
				break
			}
		}
	}
	if got, want := isLibc(s), libcOracle.MatchString(s); got != want {
		t.Errorf("isLibc(%q) = %v, the regexp says %v", s, got, want)
	}
	if got, want := isLibpthread(s), pthreadOracle.MatchString(s); got != want {
		t.Errorf("isLibpthread(%q) = %v, the regexp says %v", s, got, want)
	}
}

// trimZeros is a run of digits as strconv.Itoa writes its value ("" stays "").
func trimZeros(s string) string {
	if s == "" {
		return s
	}
	v, _ := strconv.Atoi(s)
	return strconv.Itoa(v)
}

func TestNameMatchers(t *testing.T) {
	for _, s := range nameSeeds {
		checkNames(t, s)
	}
}

func FuzzNameMatchers(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(checkNames)
}
