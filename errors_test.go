package pyglass

import (
	"errors"
	"fmt"
	"testing"

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
		{&pyproc.Error{PID: 7, Err: pyproc.ErrNoProcess}, ErrNoProcess},
		{&pyproc.Error{PID: 7, Err: pyproc.ErrPermission}, ErrPermission},
		{&pyproc.Error{PID: 7, Err: pyproc.ErrNotPython}, ErrNotPython},
		{&pyproc.Error{PID: 7, Err: pyproc.ErrZombie}, ErrNotPython},
		{&pyproc.Error{PID: 7, Err: pyproc.ErrUnsupportedVersion}, ErrNotPython},
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
	}
}
