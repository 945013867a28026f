package inject

import "errors"

type gateCode struct {
	code         []byte
	entry, state uint64
}

// genGate is not written for arm64 yet: a thread busy in C code there is
// awaited by sampling only.
func genGate(addr, real, deadline uint64, waits uint32) (gateCode, error) {
	return gateCode{}, errors.New("the gate is not implemented on arm64")
}

// gateRelocType is R_AARCH64_JUMP_SLOT.
const gateRelocType = 1026
