package leak

import (
	"fmt"

	"github.com/pyglass/pyglass"
)

// testHookParse, when set (tests), is called by every Parse function
// before it decodes.
var testHookParse func()

// recoverReport is deferred first by the exported functions of this
// package that do work: a panic (a bug, or output no check foresaw)
// becomes a *pyglass.Error of kind ErrInternal rather than taking the
// caller down. The target is left as pyglass.Exec leaves it (Exec has the
// same boundary).
func recoverReport(err *error, what string) {
	if r := recover(); r != nil {
		*err = &pyglass.Error{Kind: pyglass.ErrInternal, Msg: fmt.Sprintf("internal error in the %s report: %v", what, r),
			Hint: "this is a bug in pyglass; please report it with this message"}
	}
}
