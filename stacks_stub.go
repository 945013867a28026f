package pyglass

import "context"

// Stacks reads every thread's Python stack.
func (p *Process) Stacks(ctx context.Context, opt StackOptions) (*StackDump, error) {
	return nil, errorf(ErrNotPython, "", "not implemented")
}
