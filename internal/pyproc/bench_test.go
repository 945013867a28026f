package pyproc_test

import (
	"debug/elf"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
)

// benchInspect measures Inspect on a live interpreter. Every call starts
// from nothing (no cache is kept between calls), as one CLI run does.
func benchInspect(b *testing.B, in pyproctest.Interp) {
	tg := pyproctest.StartInterp(b, in)
	pid := tg.PID()
	if _, err := pyproc.Inspect(pid); err != nil {
		b.Fatalf("Inspect: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pyproc.Inspect(pid); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInspect measures Inspect on pyenv builds (libpython shared)
// and on the system python3.11 (libpython linked in).
func BenchmarkInspect(b *testing.B) {
	b.Run("pyenv-3.12", func(b *testing.B) { benchInspect(b, pyproctest.Pyenv(b, "3.12")) })
	b.Run("system", func(b *testing.B) { benchInspect(b, pyproctest.System(b)) })
	// Before 3.11 the version is found by scanning .rodata.
	b.Run("pyenv-3.10", func(b *testing.B) { benchInspect(b, pyproctest.Pyenv(b, "3.10")) })
	b.Run("pyenv-2.7", func(b *testing.B) { benchInspect(b, pyproctest.Pyenv(b, "2.7")) })
}

// BenchmarkFindPython measures FindPython on the pyenv 3.12 build.
func BenchmarkFindPython(b *testing.B) {
	tg := pyproctest.StartInterp(b, pyproctest.Pyenv(b, "3.12"))
	pid := tg.PID()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pyproc.FindPython(pid); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStaticSymbolOnDemand checks that Symbol finds, after Inspect
// returned and a garbage collection ran, a static symbol that only
// .symtab holds (its table is read on demand from the still open file).
func TestStaticSymbolOnDemand(t *testing.T) {
	for _, c := range []struct{ minor, name string }{{"2.7", "interp_head"}, {"3.6", "interp_head"}, {"3.12", "runtime_initialized"}} {
		t.Run(c.minor, func(t *testing.T) {
			in := pyproctest.Pyenv(t, c.minor)
			libs, _ := filepath.Glob(filepath.Join(in.Home, "lib", "libpython*.so.1.0"))
			if len(libs) != 1 {
				t.Skipf("no libpython in %s", in.Home)
			}
			f, err := elf.Open(libs[0])
			if err != nil {
				t.Fatal(err)
			}
			syms, err := f.Symbols()
			f.Close()
			if err != nil {
				t.Skipf("%s: %v", libs[0], err)
			}
			var want uint64
			for _, s := range syms {
				if s.Name == c.name && s.Section != elf.SHN_UNDEF {
					want = s.Value
					break
				}
			}
			if want == 0 {
				t.Skipf("%s has no %s in .symtab", libs[0], c.name)
			}
			tg := pyproctest.StartInterp(t, in)
			pr, err := pyproc.Inspect(tg.PID())
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			runtime.GC()
			runtime.GC()
			got, ok := pr.Python.Symbol(c.name)
			if !ok || got != want+pr.Python.Bias {
				t.Errorf("Symbol(%q) = %#x, %v; want %#x", c.name, got, ok, want+pr.Python.Bias)
			}
			if !pr.Python.InData(got) {
				t.Errorf("%s at %#x not in data %v", c.name, got, pr.Python.Data)
			}
			if _, ok := pr.Python.Symbol("no_such_symbol_pyglass"); ok {
				t.Error("absent symbol found")
			}
		})
	}
}
