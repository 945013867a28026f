package elfsym

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDemangle: the functions of a C++ library built here with g++ are
// named as c++filt names them (a method, a template's, a static one);
// C names, bad and oversized mangled names are left as they are.
func TestDemangle(t *testing.T) {
	for in, want := range map[string]string{
		"main":                                  "main",
		"_Zx":                                   "_Zx",
		"_ZN2pg7Blocker4waitEi":                 "pg::Blocker::wait(int)",
		"_Z" + string(make([]byte, maxMangled)): "_Z" + string(make([]byte, maxMangled)),
	} {
		if got := Demangle(in); got != want {
			t.Errorf("Demangle(%.40q) = %.60q, want %.60q", in, got, want)
		}
	}
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++ to build a C++ library: only the names above were checked")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "lib.cc")
	code := `#include <vector>
namespace pg {
struct Blocker { int wait(int n); };
int Blocker::wait(int n) { return n * 3; }
template <typename T> T twice(T x) { return x + x; }
template long twice<long>(long);
static int __attribute__((noinline)) hidden(std::vector<int> &v) { v.push_back(1); return v.size(); }
int use() { std::vector<int> v; return hidden(v); }
}
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(dir, "lib.so")
	if out, err := exec.Command(gxx, "-shared", "-fPIC", "-O1", "-o", so, src).CombinedOutput(); err != nil {
		t.Fatalf("g++: %v: %s", err, out)
	}
	fh, err := os.Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	e, err := Open(fh)
	if err != nil {
		t.Fatal(err)
	}
	e.LoadSymtab()
	for mangled, want := range map[string]string{
		"_ZN2pg7Blocker4waitEi":             "pg::Blocker::wait(int)",
		"_ZN2pg5twiceIlEET_S1_":             "long pg::twice<long>(long)",
		"_ZN2pg3useEv":                      "pg::use()",
		"_ZN2pgL6hiddenERSt6vectorIiSaIiEE": "pg::hidden(std::vector<int, std::allocator<int> >&)",
	} {
		s, ok := e.Lookup(mangled)
		if !ok {
			t.Errorf("%s: not in the library", mangled)
			continue
		}
		name, _, ok := e.FuncAt(s.Value)
		if got := Demangle(name); !ok || got != want {
			t.Errorf("FuncAt(%#x) = %q, demangled %q, want %q", s.Value, name, got, want)
		}
	}
}
