package leak

import (
	"errors"
	"strings"
	"testing"

	"github.com/pyglass/pyglass"
)

// TestParsePanicIsInternal: a panic while decoding a report (injected
// through testHookParse) is returned as pyglass.ErrInternal, not raised
// to the caller.
func TestParsePanicIsInternal(t *testing.T) {
	testHookParse = func() { panic("injected by the test") }
	defer func() { testHookParse = nil }()
	for name, parse := range map[string]func([]byte) error{
		"garbage": func(b []byte) error { _, err := ParseGarbage(b); return err },
		"objects": func(b []byte) error { _, err := ParseObjects(b); return err },
		"gc":      func(b []byte) error { _, err := ParseGC(b); return err },
		"trace":   func(b []byte) error { _, err := ParseTrace(b); return err },
	} {
		err := parse([]byte("{}\n"))
		if !errors.Is(err, pyglass.ErrInternal) || !strings.Contains(err.Error(), "injected by the test") {
			t.Errorf("%s: %v, want ErrInternal", name, err)
		}
	}
}
