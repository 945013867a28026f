package pyglass

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/procfs"
	"github.com/pyglass/pyglass/internal/ptrace"
	"github.com/pyglass/pyglass/internal/pyproc"
)

// TestConvertErrClassifies: the internal packages' errors keep their
// meaning, and one pyglass does not recognise is ErrInternal, never
// "not a Python process".
func TestConvertErrClassifies(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{&Error{PID: 7, Kind: pyproc.ErrNoProcess}, ErrNoProcess},
		{&Error{PID: 7, Kind: pyproc.ErrPermission}, ErrPermission},
		{&Error{PID: 7, Kind: ErrNotPython, Sub: pyproc.ErrNotPython}, ErrNotPython},
		{&Error{PID: 7, Kind: ErrNotPython, Sub: pyproc.ErrZombie}, ErrNotPython},
		{&Error{PID: 7, Kind: ErrNotPython, Sub: pyproc.ErrUnsupportedVersion}, ErrNotPython},
		// the lower layers' sentinels are the kinds themselves
		{fmt.Errorf("reading /proc/7/maps: %w", procfs.ErrNoProcess), ErrNoProcess},
		{fmt.Errorf("freezing 7: %w", ptrace.ErrPermission), ErrPermission},
		{fmt.Errorf("process 7: computing load bias of /x: %w", errors.New("no PT_LOAD")), ErrInternal},
		{errors.New("listing processes: too many open files"), ErrInternal},
	}
	sentinels := []error{ErrNoProcess, ErrNotPython, ErrPermission, ErrTimeout, ErrBusy, ErrInternal}
	for _, c := range cases {
		got := convertErr(c.err)
		if !errors.Is(got, c.want) {
			t.Errorf("convertErr(%v) = %v; want kind %v", c.err, got, c.want)
		}
		n := 0
		for _, s := range sentinels {
			if errors.Is(got, s) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("convertErr(%v) matches %d sentinels; want exactly one", c.err, n)
		}
		if got.Error() != c.err.Error() {
			t.Errorf("convertErr(%v) changed the message to %q", c.err, got.Error())
		}
		var e *Error
		if errors.As(c.err, &e) && e.Sub != nil && !errors.Is(got, e.Sub) {
			t.Errorf("convertErr(%v) lost the finer reason %v", c.err, e.Sub)
		}
	}
}

// TestYamaAdvice: a permission error on a machine whose Yama ptrace_scope
// forbids pyglass to trace says how to lift it, for each scope; without
// Yama, with scope 0, or with CAP_SYS_PTRACE where that suffices, nothing
// about Yama is said; other errors never get it.
func TestYamaAdvice(t *testing.T) {
	oldScope, oldCap := yamaScope, hasCapPtrace
	defer func() { yamaScope, hasCapPtrace = oldScope, oldCap }()
	perm := &Error{Kind: ErrPermission, Msg: "cannot pause the threads of process 42", Hint: "run pyglass as root"}
	cases := []struct {
		scope   int
		present bool
		capable bool
		want    []string // in the hint, after the error's own
	}{
		{0, false, false, nil},
		{0, true, false, nil},
		{1, true, false, []string{"ptrace_scope is 1", "sudo sysctl kernel.yama.ptrace_scope=0", "CAP_SYS_PTRACE"}},
		{1, true, true, nil},
		{2, true, false, []string{"ptrace_scope is 2", "CAP_SYS_PTRACE", "sudo sysctl kernel.yama.ptrace_scope=0"}},
		{2, true, true, nil},
		{3, true, false, []string{"ptrace_scope is 3", "reboot"}},
		{3, true, true, []string{"ptrace_scope is 3", "not even root"}},
	}
	for _, c := range cases {
		yamaScope = func() (int, bool) { return c.scope, c.present }
		hasCapPtrace = func() bool { return c.capable }
		h := HintOf(perm)
		if !strings.HasPrefix(h, "run pyglass as root") {
			t.Errorf("scope %d: the error's own hint is lost: %q", c.scope, h)
		}
		if c.want == nil && strings.Contains(h, "Yama") {
			t.Errorf("scope %d (present %v, CAP_SYS_PTRACE %v): Yama blamed: %q", c.scope, c.present, c.capable, h)
		}
		for _, w := range c.want {
			if !strings.Contains(h, w) {
				t.Errorf("scope %d (CAP_SYS_PTRACE %v): hint %q lacks %q", c.scope, c.capable, h, w)
			}
		}
		if c.scope == 3 && strings.Contains(h, "sysctl kernel.yama.ptrace_scope=0'") {
			t.Errorf("scope 3 cannot be lowered, yet the hint says so: %q", h)
		}
		for _, other := range []error{
			&Error{Kind: ErrNotPython, Msg: "x"}, &Error{Kind: ErrTimeout, Msg: "x"}, errors.New("plain"),
		} {
			if h := HintOf(other); strings.Contains(h, "Yama") {
				t.Errorf("scope %d: a %v error gets Yama advice: %q", c.scope, other, h)
			}
		}
	}
	// A hint that already gives the sysctl is not repeated.
	yamaScope = func() (int, bool) { return 1, true }
	hasCapPtrace = func() bool { return false }
	own := &Error{Kind: ErrPermission, Msg: "x", Hint: "sudo sysctl kernel.yama.ptrace_scope=0"}
	if h := HintOf(own); h != own.Hint {
		t.Errorf("hint repeated: %q", h)
	}
}
