package inject

import "github.com/pyglass/pyglass/internal/ptrace"

// The NT_PRFPREG image: v0-v31 (16 bytes each), then fpsr and fpcr.

func markVectorRegs(fp []byte) {
	for i := 0; i < 512 && i < len(fp); i++ {
		fp[i] = byte(i*7 + 1)
	}
}

func vectorRanges(n int) [][2]int { return [][2]int{{0, n}} }

// markFlags: arm64's chain keeps every PSTATE bit C code may see.
func markFlags(*ptrace.Regs, bool) {}

func flagsMarked(*ptrace.Regs) bool { return true }
