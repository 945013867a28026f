package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pyglass/pyglass"
)

// TestUnclassifiedError: an error pyglass cannot classify exits 6 with an
// "internal error" message, and never says the target is not Python (3).
func TestUnclassifiedError(t *testing.T) {
	for _, err := range []error{
		errors.New("parsing objects report: unexpected end of JSON input"),
		fmt.Errorf("process 42: computing load bias of /usr/bin/python3: %w", errors.New("no PT_LOAD segment")),
		&pyglass.Error{Kind: pyglass.ErrInternal, Msg: "something odd"},
	} {
		var errb bytes.Buffer
		code := fail(IO{Err: &errb}, err)
		msg := errb.String()
		if code != ExitInternal || !strings.HasPrefix(msg, "pyglass: internal error: ") ||
			strings.Contains(msg, "not a Python") || strings.Count(msg, "\n") != 2 || !strings.Contains(msg, "\nhint: ") {
			t.Errorf("fail(%v): exit %d, stderr %q; want exit %d, \"pyglass: internal error: ...\" and a hint", err, code, msg, ExitInternal)
		}
	}
	// The classified ones keep their codes.
	for kind, want := range map[error]ExitCode{
		pyglass.ErrNoProcess: ExitNotPython, pyglass.ErrNotPython: ExitNotPython,
		pyglass.ErrPermission: ExitPermission, pyglass.ErrTimeout: ExitTimeout, pyglass.ErrBusy: ExitTimeout,
	} {
		if got := codeOf(&pyglass.Error{Kind: kind, Msg: "x"}); got != want {
			t.Errorf("codeOf(%v) = %d, want %d", kind, got, want)
		}
	}
}

// TestOutputErrors: a command whose output cannot be written does not
// succeed. A reader that went away (a real pipe whose read end is closed)
// ends it quietly with the SIGPIPE convention; a full disk (/dev/full) is
// one error line and exit 6.
func TestOutputErrors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	var errb bytes.Buffer
	code := Main([]string{"ps"}, IO{In: strings.NewReader(""), Out: w, Err: &errb})
	if code != ExitBrokenPipe || errb.Len() != 0 {
		t.Errorf("pyglass ps into a closed pipe: exit %d, stderr %q; want exit %d and nothing printed", code, errb.String(), ExitBrokenPipe)
	}

	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	for _, args := range [][]string{{"ps"}, {"ps", "--json"}, {"version"}, {"help"}} {
		errb.Reset()
		code = Main(args, IO{In: strings.NewReader(""), Out: full, Err: &errb})
		if code != ExitInternal || !strings.Contains(errb.String(), "cannot write the output") || !strings.Contains(errb.String(), "no space left") {
			t.Errorf("pyglass %s > /dev/full: exit %d, stderr %q; want exit %d and the write error", args, code, errb.String(), ExitInternal)
		}
	}
}
