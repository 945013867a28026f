// Command gen writes cpython/layout/tables.json and tables_gen.go (the
// same tables as Go data, which the package compiles in): for each CPython whose
// headers are installed on this machine it compiles a C program that
// prints offsetof/sizeof of every field in the spec (spec.go), runs it,
// and records the numbers keyed by "major.minor".
//
// Usage, from the module root:
//
//	go run ./cpython/layout/gen [-headers DIR[=TAG],...] [-check] [-o FILE]
//	go run ./cpython/layout/gen -go-only    # tables_gen.go from tables.json
//
// Sources, in priority order: the pyenv builds
// ($(pyenv root)/versions/*/include/python*), Debian's
// /usr/include/python3.*, then -headers (for example the 3.14 chroot's
// <root>/usr/include/python3.14; the sid root of the tests,
// $PYGLASS_SID_ROOT or /var/cache/pyglass/sid-root, is searched by
// default). When two sources of one minor version
// agree they share the key "3.11"; when they differ, the later one is
// stored as "3.11-TAG".
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// source is one set of CPython headers.
type source struct {
	dir                 string // directory holding Python.h
	tag                 string // "pyenv", "debian", or given with -headers
	major, minor, micro int
}

func (s source) key() string { return fmt.Sprintf("%d.%d", s.major, s.minor) }

func (s source) String() string {
	return fmt.Sprintf("%s %d.%d.%d %s", s.tag, s.major, s.minor, s.micro, s.dir)
}

// table is one entry of tables.json.
type table struct {
	Sources []string       `json:"sources"`
	Offsets map[string]int `json:"offsets"`
}

func main() {
	_, self, _, _ := runtime.Caller(0)
	out := flag.String("o", filepath.Join(filepath.Dir(self), "..", "tables.json"), "output file")
	extra := flag.String("headers", "", "comma-separated extra header directories, DIR or DIR=TAG")
	check := flag.Bool("check", false, "compare with the output file instead of writing it")
	goOnly := flag.Bool("go-only", false, "only write tables_gen.go, from the output file (no headers needed)")
	flag.Parse()
	goOut := filepath.Join(filepath.Dir(*out), "tables_gen.go")
	if *goOnly {
		if err := jsonToGo(*out, goOut); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		return
	}

	srcs, err := discover(*extra)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	tables, err := build(srcs, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	data, err := encode(tables)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if *check {
		old, err := os.ReadFile(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		if !bytes.Equal(old, data) {
			fmt.Fprintf(os.Stderr, "gen: %s is out of date\n", *out)
			os.Exit(1)
		}
		return
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := jsonToGo(*out, goOut); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func encode(tables map[string]*table) ([]byte, error) {
	data, err := json.MarshalIndent(tables, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding tables: %w", err)
	}
	return append(data, '\n'), nil
}

// defaultSidRoot is where scripts/sid-root.sh builds the Debian sid root
// (internal/testenv.DefaultSidRoot).
const defaultSidRoot = "/var/cache/pyglass/sid-root"

// pyenvRoot returns $(pyenv root) without running pyenv when possible.
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

// discover lists the header directories present on this machine.
func discover(extra string) ([]source, error) {
	var srcs []source
	add := func(dir, tag string) error {
		s, err := probe(dir, tag)
		if err != nil {
			return err
		}
		srcs = append(srcs, s)
		return nil
	}
	dirs, _ := filepath.Glob(filepath.Join(pyenvRoot(), "versions", "*", "include", "python*"))
	sort.Strings(dirs)
	for _, d := range dirs {
		if err := add(d, "pyenv"); err != nil {
			return nil, err
		}
	}
	dirs, _ = filepath.Glob("/usr/include/python[23].*")
	sort.Strings(dirs)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "Python.h")); err != nil {
			continue
		}
		if err := add(d, "debian"); err != nil {
			return nil, err
		}
	}
	// The Debian sid root that provides 3.14 to the tests, when built.
	sid := os.Getenv("PYGLASS_SID_ROOT")
	if sid == "" {
		sid = defaultSidRoot
	}
	dirs, _ = filepath.Glob(filepath.Join(sid, "usr/include/python3.*"))
	sort.Strings(dirs)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "Python.h")); err != nil {
			continue
		}
		if err := add(d, "sid"); err != nil {
			return nil, err
		}
	}
	for _, e := range strings.Split(extra, ",") {
		if e == "" {
			continue
		}
		dir, tag, ok := strings.Cut(e, "=")
		if !ok {
			tag = "extra"
		}
		if err := add(dir, tag); err != nil {
			return nil, err
		}
	}
	sortSources(srcs)
	return srcs, nil
}

// sortSources orders by version, keeping the priority order of tags.
func sortSources(srcs []source) {
	sort.SliceStable(srcs, func(i, j int) bool {
		a, b := srcs[i], srcs[j]
		if a.major != b.major {
			return a.major < b.major
		}
		return a.minor < b.minor
	})
}

var versionRE = regexp.MustCompile(`(?m)^#define\s+PY_(MAJOR|MINOR|MICRO)_VERSION\s+(\d+)`)

// probe reads the version of the headers in dir from patchlevel.h.
func probe(dir, tag string) (source, error) {
	b, err := os.ReadFile(filepath.Join(dir, "patchlevel.h"))
	if err != nil {
		return source{}, fmt.Errorf("reading headers version: %w", err)
	}
	s := source{dir: dir, tag: tag, major: -1, minor: -1}
	for _, m := range versionRE.FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "MAJOR":
			s.major = n
		case "MINOR":
			s.minor = n
		case "MICRO":
			s.micro = n
		}
	}
	if s.major < 0 || s.minor < 0 {
		return source{}, fmt.Errorf("no version in %s/patchlevel.h", dir)
	}
	return s, nil
}

// build generates the tables of all sources and merges them by key.
func build(srcs []source, log *os.File) (map[string]*table, error) {
	tables := map[string]*table{}
	for _, s := range srcs {
		offs, err := generate(s)
		if err != nil {
			return nil, fmt.Errorf("generating %v: %w", s, err)
		}
		key := s.key()
		if t, ok := tables[key]; ok && !equal(t.Offsets, offs) {
			key += "-" + s.tag
			if log != nil {
				fmt.Fprintf(log, "gen: %v differs from %s, stored as %s\n", s, t.Sources[0], key)
			}
		}
		if t, ok := tables[key]; ok {
			t.Sources = append(t.Sources, s.String())
			continue
		}
		tables[key] = &table{Sources: []string{s.String()}, Offsets: offs}
	}
	return tables, nil
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// vnum turns "3.7" into 307; "" gives def.
func vnum(s string, def int) int {
	if s == "" {
		return def
	}
	maj, min, _ := strings.Cut(s, ".")
	a, _ := strconv.Atoi(maj)
	b, _ := strconv.Atoi(min)
	return a*100 + b
}

func inRange(v int, from, to string) bool {
	return v >= vnum(from, 0) && v <= vnum(to, 1<<30)
}

// program returns the C source that prints the fields of version v.
func program(v int) string {
	var b strings.Builder
	b.WriteString("/* generated by cpython/layout/gen */\n")
	if v >= 307 {
		b.WriteString("#define Py_BUILD_CORE 1\n")
	}
	b.WriteString("#include <stddef.h>\n#include <stdio.h>\n")
	for _, p := range includes {
		if inRange(v, p.from, p.to) {
			b.WriteString(p.text)
		}
	}
	for _, p := range preludes {
		if inRange(v, p.from, p.to) {
			b.WriteString(p.text)
		}
	}
	b.WriteString("int main(void) {\n")
	for _, f := range fields {
		if inRange(v, f.from, f.to) {
			fmt.Fprintf(&b, "\tprintf(\"%s %%ld\\n\", (long)(%s));\n", f.name, f.expr)
		}
	}
	b.WriteString("\treturn 0;\n}\n")
	return b.String()
}

// generate compiles and runs the program for s, returning every field
// of the spec (-1 for fields the version lacks).
func generate(s source) (map[string]int, error) {
	v := s.major*100 + s.minor
	tmp, err := os.MkdirTemp("", "pyglass-layout-")
	if err != nil {
		return nil, fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	c := filepath.Join(tmp, "layout.c")
	bin := filepath.Join(tmp, "layout")
	if err := os.WriteFile(c, []byte(program(v)), 0o644); err != nil {
		return nil, fmt.Errorf("writing C program: %w", err)
	}
	// -idirafter: the parent (a multiarch usr/include holding pyconfig.h)
	// must not shadow this machine's libc headers.
	cmd := exec.Command("gcc", "-w", "-O0", "-I", s.dir, "-idirafter", filepath.Dir(s.dir), "-o", bin, c)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compiling: %w\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		return nil, fmt.Errorf("running: %w", err)
	}
	offs := map[string]int{}
	for _, f := range fields {
		offs[f.name] = -1
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, val, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(val)
		if !ok || err != nil {
			return nil, fmt.Errorf("parsing output line %q", line)
		}
		offs[name] = n
	}
	return offs, nil
}
