package pyglass

import (
	"fmt"
	"strings"
)

// SetWarningHandler sets the function that receives pyglass's warnings
// about this process: one line each, without a trailing newline, each
// distinct warning once per Process (e.g. that the target's structure
// offsets were unusable and pyglass's own were used, or that its Python
// is newer than pyglass was tested on). Warnings given before a handler
// is set are passed to it at once. Without a handler they are only kept
// (Warnings).
func (p *Process) SetWarningHandler(f func(msg string)) {
	p.onWarn = f
	if f != nil {
		for _, w := range p.warnings {
			f(w)
		}
	}
}

// Warnings returns the warnings given about this process so far.
func (p *Process) Warnings() []string { return append([]string(nil), p.warnings...) }

// warn records a warning and passes it to the handler, once per text.
func (p *Process) warn(msg string) {
	msg = strings.Join(strings.Fields(msg), " ")
	for _, w := range p.warnings {
		if w == msg {
			return
		}
	}
	p.warnings = append(p.warnings, msg)
	if p.onWarn != nil {
		p.onWarn(msg)
	}
}

// guard is deferred first by every public entry point: a panic of the
// operation (a bug, or a target's memory no check foresaw) becomes an
// ErrInternal error instead of taking the caller down. Deferred as the
// first statement, it runs after the operation's own deferred clean-ups,
// which thaw frozen threads and detach from the target, so the target is
// never left stopped.
func guard(err *error, op string, pid int) {
	r := recover()
	if r == nil {
		return
	}
	where := ""
	if pid > 0 {
		where = fmt.Sprintf(" on process %d", pid)
	}
	*err = &Error{Kind: ErrInternal, Msg: fmt.Sprintf("internal error in %s%s: %v", op, where, r),
		Hint: "this is a bug in pyglass, the target was left running; please report it with this message"}
}
