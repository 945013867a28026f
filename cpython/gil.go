package cpython

import (
	"fmt"

	"github.com/pyglass/pyglass/cpython/layout"
	"github.com/pyglass/pyglass/memory"
)

// GILHolder returns the address of the PyThreadState that holds the GIL
// of interp, or 0 when no thread holds it.
//
//   - 2.7, 3.6: the _PyThreadState_Current symbol (the current thread
//     state, NULL while the GIL is released).
//   - 3.7–3.11: _PyRuntime.gilstate.tstate_current, and
//     _PyRuntime.ceval.gil.locked must be set.
//   - 3.12+: interp->ceval.gil points to a struct _gil_runtime_state;
//     the holder is last_holder while locked is set.
//
// It fails when the symbol or runtime address it needs is unknown or the
// memory cannot be read.
func GILHolder(r memory.Reader, img Image, l *layout.Layout, interp uint64) (uint64, error) {
	switch {
	case l.InterpCevalGil >= 0:
		gil, err := memory.NonNullPtr(r, interp+uint64(l.InterpCevalGil))
		if err != nil {
			return 0, fmt.Errorf("reading interp->ceval.gil: %w", err)
		}
		return lockedHolder(r, gil+uint64(l.GilLocked), gil+uint64(l.GilLastHolder))
	case l.RuntimeGilstateTstateCurrent >= 0:
		rt, ok := img.RuntimeAddr()
		if !ok {
			return 0, fmt.Errorf("finding the GIL holder: %w", errNoRuntime)
		}
		cur, err := memory.Ptr(r, rt+uint64(l.RuntimeGilstateTstateCurrent))
		if err != nil {
			return 0, fmt.Errorf("reading gilstate.tstate_current: %w", err)
		}
		if cur == 0 || l.RuntimeCevalGilLocked < 0 {
			return cur, nil
		}
		locked, err := memory.I32(r, rt+uint64(l.RuntimeCevalGilLocked))
		if err != nil {
			return 0, fmt.Errorf("reading ceval.gil.locked: %w", err)
		}
		if locked == 0 {
			return 0, nil
		}
		return cur, nil
	default:
		a, ok := img.symbol("_PyThreadState_Current")
		if !ok {
			return 0, fmt.Errorf("finding the GIL holder: no _PyThreadState_Current symbol")
		}
		cur, err := memory.Ptr(r, a)
		if err != nil {
			return 0, fmt.Errorf("reading _PyThreadState_Current: %w", err)
		}
		return cur, nil
	}
}

// lockedHolder reads a struct _gil_runtime_state's locked and last_holder.
func lockedHolder(r memory.Reader, lockedAddr, holderAddr uint64) (uint64, error) {
	locked, err := memory.I32(r, lockedAddr)
	if err != nil {
		return 0, fmt.Errorf("reading gil.locked: %w", err)
	}
	if locked == 0 {
		return 0, nil
	}
	h, err := memory.Ptr(r, holderAddr)
	if err != nil {
		return 0, fmt.Errorf("reading gil.last_holder: %w", err)
	}
	return h, nil
}
