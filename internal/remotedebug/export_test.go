package remotedebug

import "github.com/pyglass/pyglass/memory"

// PendingAddr is, for the tests of package remotedebug_test, the address
// of the debugger_pending_call flag of the thread state at tstate.
func PendingAddr(r memory.Reader, runtime, tstate uint64) (uint64, error) {
	o, err := readOffsets(r, runtime)
	if err != nil {
		return 0, err
	}
	return o.pendingAddr(tstate), nil
}

// EvalBreakerAddr is the address of the eval_breaker word of the thread
// state at tstate.
func EvalBreakerAddr(r memory.Reader, runtime, tstate uint64) (uint64, error) {
	o, err := readOffsets(r, runtime)
	if err != nil {
		return 0, err
	}
	return tstate + o.evalBreaker, nil
}
