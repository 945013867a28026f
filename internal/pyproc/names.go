package pyproc

import (
	"strconv"
	"strings"
)

// The file names and version strings of an interpreter are recognised
// by the small matchers below, not by regular expressions: compiling
// and running those was a sizeable share of what a one-shot command
// does before it reads anything (their memory is page faults, which are
// dear on virtual machines). names_test.go checks each matcher against
// the regular expression it replaces.

// digits returns how many ASCII digits s starts with, at most max.
func digits(s string, max int) int {
	n := 0
	for n < len(s) && n < max && isDigit(s[n]) {
		n++
	}
	return n
}

// isLibpython reports whether a file name is a libpython's:
// "libpython" X "." Y(Y) [a-z]* ".so" and anything after
// (^libpython(\d)\.(\d{1,2})[a-z]*\.so).
func isLibpython(name string) bool {
	s, ok := strings.CutPrefix(name, "libpython")
	if !ok || digits(s, 1) != 1 || len(s) < 2 || s[1] != '.' {
		return false
	}
	s = s[2:]
	n := digits(s, 2)
	if n == 0 {
		return false
	}
	s = s[n:]
	for len(s) > 0 && 'a' <= s[0] && s[0] <= 'z' {
		s = s[1:]
	}
	return strings.HasPrefix(s, ".so")
}

// nameVersion finds the first "python" X "." Y(Y) in a file name
// ("python3.11", "libpython2.7.so"): its major and minor version
// (python(\d)\.(\d{1,2})).
func nameVersion(name string) (major, minor int, ok bool) {
	for i := 0; ; {
		j := strings.Index(name[i:], "python")
		if j < 0 {
			return 0, 0, false
		}
		s := name[i+j+len("python"):]
		if len(s) >= 3 && isDigit(s[0]) && s[1] == '.' {
			if n := digits(s[2:], 2); n > 0 {
				return int(s[0] - '0'), atoi(s[2 : 2+n]), true
			}
		}
		i += j + 1
	}
}

// atoi is the value of a run of one or two ASCII digits (as digits
// found it: never an error).
func atoi(s string) int {
	v, _ := strconv.Atoi(s)
	return v
}

// versionParts is a PY_VERSION string taken apart: X.Y.Z, then an
// optional release level (a, b, rc) and serial, or a "+".
type versionParts struct {
	major, minor, micro int
	level               string // "a", "b", "rc" or ""
	serial              int
}

// splitVersion parses s whole as a PY_VERSION string
// (^(\d)\.(\d{1,2})\.(\d{1,2})(?:(a|b|rc)(\d{1,2})|\+)?$).
func splitVersion(s string) (versionParts, bool) {
	var v versionParts
	if len(s) < 5 || !isDigit(s[0]) || s[1] != '.' {
		return v, false
	}
	v.major = int(s[0] - '0')
	s = s[2:]
	n := digits(s, 2)
	if n == 0 || len(s) == n || s[n] != '.' {
		return v, false
	}
	v.minor, s = atoi(s[:n]), s[n+1:]
	if n = digits(s, 2); n == 0 {
		return v, false
	}
	v.micro, s = atoi(s[:n]), s[n:]
	switch {
	case s == "" || s == "+":
		return v, true
	case strings.HasPrefix(s, "rc"):
		v.level, s = "rc", s[2:]
	case s[0] == 'a' || s[0] == 'b':
		v.level, s = s[:1], s[1:]
	default:
		return v, false
	}
	if n = digits(s, 2); n == 0 || n != len(s) {
		return v, false
	}
	v.serial = atoi(s)
	return v, true
}

// versionTail returns where, in s, the leftmost PY_VERSION string that
// runs to the end of s starts, or -1
// ((\d\.\d{1,2}\.\d{1,2}(?:(?:a|b|rc)\d{1,2}|\+)?)$).
func versionTail(s string) int {
	for i := 0; i+5 <= len(s); i++ {
		if _, ok := splitVersion(s[i:]); ok {
			return i
		}
	}
	return -1
}

// isLibc reports whether a file name is that of a C library that
// defines munmap: glibc's libc.so.N or libc-X.Y.so, musl's
// libc.musl-*.so* or ld-musl-*.so*.
func isLibc(name string) bool {
	if s, ok := strings.CutPrefix(name, "libc.so."); ok {
		return s != "" && digits(s, len(s)) == len(s)
	}
	if s, ok := strings.CutPrefix(name, "libc-"); ok {
		return dottedSo(s)
	}
	for _, prefix := range []string{"libc.musl-", "ld-musl-"} {
		if s, ok := strings.CutPrefix(name, prefix); ok {
			return strings.Contains(s, ".so") && !strings.Contains(s, "\n") // (. is not \n)
		}
	}
	return false
}

// isLibpthread reports whether a file name is that of glibc's thread
// library before 2.34: libpthread.so.N or libpthread-X.Y.so.
func isLibpthread(name string) bool {
	if s, ok := strings.CutPrefix(name, "libpthread.so."); ok {
		return s != "" && digits(s, len(s)) == len(s)
	}
	if s, ok := strings.CutPrefix(name, "libpthread-"); ok {
		return dottedSo(s)
	}
	return false
}

// dottedSo reports whether s is one or more digits and dots, then
// ".so" ([\d.]+\.so).
func dottedSo(s string) bool {
	v, ok := strings.CutSuffix(s, ".so")
	if !ok || v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) && v[i] != '.' {
			return false
		}
	}
	return true
}
