package cpython

import (
	"errors"
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// Bounds on the interpreter and thread lists read from a target.
const (
	// MaxInterpreters bounds the interpreter list.
	MaxInterpreters = 256
	// MaxThreads bounds the thread list of one interpreter.
	MaxThreads = 4096
	// maxScanBytes bounds how much writable data FindInterpreters scans
	// for a candidate interpreter when no symbol leads to one.
	maxScanBytes = 64 << 20
)

var (
	// ErrNoInterpreter is returned when no valid interpreter state was
	// found (Python not initialized yet, finalized, or unrecognized).
	ErrNoInterpreter = errors.New("no Python interpreter state found")
	// ErrInvalid is returned when a structure read from the target fails
	// validation (a lying symbol, a stale pointer, the wrong layout).
	ErrInvalid = errors.New("invalid interpreter structure")
	// ErrCycle is returned when a linked list read from the target loops.
	ErrCycle = errors.New("cycle in linked list")
)

// FindInterpreters returns the addresses of the PyInterpreterState of
// every interpreter of the target, the list head first (the newest; the
// main interpreter is last).
//
// It starts from the symbol that leads to the list head: _PyRuntime (or
// the .PyRuntime section) + interpreters.head on 3.7+, interp_head on 2.7
// and 3.6. Every candidate is validated (its thread list is readable and
// points back to it, its modules, sysdict and builtins are dicts), which
// rejects a symbol that lies. When no symbol gives a valid head, it scans
// the image's writable data for a pointer to a valid interpreter. It
// returns ErrNoInterpreter when nothing valid is found.
func FindInterpreters(r memory.Reader, img Image, l *layout.Layout) ([]uint64, error) {
	var errs []error
	for _, head := range headCandidates(r, img, l, &errs) {
		if err := validateInterp(r, l, head); err != nil {
			errs = append(errs, fmt.Errorf("interpreter at %#x: %w", head, err))
			continue
		}
		return walkInterps(r, l, head)
	}
	head, err := scanInterp(r, img, l)
	if err == nil {
		return walkInterps(r, l, head)
	}
	errs = append(errs, err)
	return nil, fmt.Errorf("%w: %w", ErrNoInterpreter, errors.Join(errs...))
}

// headCandidates returns the interpreter list heads the symbols point to.
func headCandidates(r memory.Reader, img Image, l *layout.Layout, errs *[]error) []uint64 {
	var out []uint64
	add := func(from string, addr uint64) {
		p, err := memory.NonNullPtr(r, addr)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("reading interpreter list head from %s: %w", from, err))
			return
		}
		out = append(out, p)
	}
	if l.RuntimeInterpretersHead >= 0 {
		if a, ok := img.symbol("_PyRuntime"); ok {
			add("_PyRuntime", a+uint64(l.RuntimeInterpretersHead))
		}
		if a := img.PyRuntime[0]; a != 0 {
			add(".PyRuntime", a+uint64(l.RuntimeInterpretersHead))
		}
	}
	// interp_head is the list's head before _PyRuntime (2.7, 3.6); later
	// versions have no such symbol, and looking for one that is absent
	// scans the whole .symtab (a third of a millisecond, in the pause).
	if l.RuntimeInterpretersHead < 0 {
		if a, ok := img.symbol("interp_head"); ok {
			add("interp_head", a)
		}
	}
	return out
}

// isDict reports whether obj is a dict (or a subclass).
func isDict(r memory.Reader, l *layout.Layout, obj uint64) error {
	if obj == 0 {
		return memory.ErrNull
	}
	tp, err := memory.NonNullPtr(r, obj+uint64(l.ObjectObType))
	if err != nil {
		return err
	}
	flags, err := memory.U64(r, tp+uint64(l.TypeTpFlags))
	if err != nil {
		return err
	}
	if flags&tpflagsDictSubclass == 0 {
		return fmt.Errorf("object %#x is not a dict: %w", obj, ErrInvalid)
	}
	name, err := memory.CString(r, mustPtr(r, tp+uint64(l.TypeTpName)), maxTypeName)
	if err != nil {
		return err
	}
	if name != "dict" {
		return fmt.Errorf("object %#x has type %q, not dict: %w", obj, name, ErrInvalid)
	}
	return nil
}

// mustPtr reads a pointer, giving 0 on error (callers then fail reading 0).
func mustPtr(r memory.Reader, addr uint64) uint64 {
	p, _ := memory.Ptr(r, addr)
	return p
}

// validateInterp checks that interp looks like a live PyInterpreterState:
// its thread list is non-empty, every thread's interp points back, the
// list ends, and modules, sysdict and builtins are dicts.
func validateInterp(r memory.Reader, l *layout.Layout, interp uint64) error {
	if interp == 0 || interp%8 != 0 {
		return fmt.Errorf("address %#x: %w", interp, ErrInvalid)
	}
	head, err := memory.NonNullPtr(r, interp+uint64(l.InterpTstateHead))
	if err != nil {
		return fmt.Errorf("reading thread list head: %w", err)
	}
	if _, err := threadList(r, l, interp, head); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		off  int
	}{{"modules", l.InterpModules}, {"sysdict", l.InterpSysdict}, {"builtins", l.InterpBuiltins}} {
		p, err := memory.Ptr(r, interp+uint64(f.off))
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.name, err)
		}
		if err := isDict(r, l, p); err != nil {
			return fmt.Errorf("checking %s: %w", f.name, err)
		}
	}
	return nil
}

// threadList walks a thread list from head, checking that each thread
// belongs to interp; it returns the thread state addresses.
func threadList(r memory.Reader, l *layout.Layout, interp, head uint64) ([]uint64, error) {
	var out []uint64
	seen := map[uint64]bool{}
	for t := head; t != 0; {
		if len(out) >= MaxThreads {
			return out, fmt.Errorf("more than %d threads: %w", MaxThreads, memory.ErrTooLarge)
		}
		if seen[t] {
			return out, fmt.Errorf("thread %#x: %w", t, ErrCycle)
		}
		if t%8 != 0 {
			return out, fmt.Errorf("thread state address %#x: %w", t, ErrInvalid)
		}
		seen[t] = true
		back, err := memory.Ptr(r, t+uint64(l.TstateInterp))
		if err != nil {
			return out, fmt.Errorf("reading interp of thread %#x: %w", t, err)
		}
		if back != interp {
			return out, fmt.Errorf("thread %#x belongs to %#x, not %#x: %w", t, back, interp, ErrInvalid)
		}
		out = append(out, t)
		if t, err = memory.Ptr(r, t+uint64(l.TstateNext)); err != nil {
			return out, fmt.Errorf("reading next thread: %w", err)
		}
	}
	return out, nil
}

// walkInterps follows the interpreter list from a validated head. A
// next pointer that fails validation ends the list (it is reported only
// if the head itself is bad).
func walkInterps(r memory.Reader, l *layout.Layout, head uint64) ([]uint64, error) {
	out := []uint64{head}
	seen := map[uint64]bool{head: true}
	for cur := head; len(out) < MaxInterpreters; {
		next, err := memory.Ptr(r, cur+uint64(l.InterpNext))
		if err != nil || next == 0 || seen[next] {
			break
		}
		if validateInterp(r, l, next) != nil {
			break
		}
		seen[next] = true
		out = append(out, next)
		cur = next
	}
	return out, nil
}

// scanInterp looks for a valid interpreter pointer in the image's
// writable data and .PyRuntime.
func scanInterp(r memory.Reader, img Image, l *layout.Layout) (uint64, error) {
	ranges := append([][2]uint64{}, img.Data...)
	if img.PyRuntime[0] != 0 {
		ranges = append([][2]uint64{img.PyRuntime}, ranges...)
	}
	if len(ranges) == 0 {
		return 0, errors.New("no data ranges to scan")
	}
	tried := map[uint64]bool{}
	budget := maxScanBytes
	buf := make([]byte, 64<<10)
	for _, rg := range ranges {
		for a := rg[0] &^ 7; a < rg[1] && budget > 0; {
			n := uint64(len(buf))
			if rg[1]-a < n {
				n = (rg[1] - a + 7) &^ 7
			}
			got, _ := r.ReadAt(buf[:n], a)
			got &^= 7
			for i := 0; i < got; i += 8 {
				p := memory.Order.Uint64(buf[i:])
				if p == 0 || p%8 != 0 || tried[p] || len(tried) > 1<<20 {
					continue
				}
				tried[p] = true
				if quickInterpCheck(r, l, p) && validateInterp(r, l, p) == nil {
					return p, nil
				}
			}
			if got == 0 {
				got = 4096 // unreadable page: skip it
			}
			a += uint64(got)
			budget -= got
		}
	}
	return 0, fmt.Errorf("scanning %d candidate pointers: none is an interpreter", len(tried))
}

// quickInterpCheck is the cheap part of validateInterp, used to discard
// most candidates of a scan with two reads.
func quickInterpCheck(r memory.Reader, l *layout.Layout, p uint64) bool {
	head, err := memory.Ptr(r, p+uint64(l.InterpTstateHead))
	if err != nil || head == 0 || head%8 != 0 {
		return false
	}
	back, err := memory.Ptr(r, head+uint64(l.TstateInterp))
	return err == nil && back == p
}
