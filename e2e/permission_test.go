package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// TestPermissionAdvice: an ordinary user reading another user's process
// gets exit 4, one error line and a hint saying what to do. The hint
// speaks of Yama's ptrace_scope exactly when this machine's setting
// restricts tracing (then with the sysctl to lift it), never otherwise.
func TestPermissionAdvice(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skipf(t, "running pyglass as another user needs root")
	}
	in := anyInterp(t, "3.11-debian", "3.12")
	const nobody = 65534
	roots := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
	yama := "absent"
	if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil {
		yama = strings.TrimSpace(string(b))
	}
	pid := strconv.Itoa(roots.PID)
	for _, args := range [][]string{{"stacks", pid}, {"stacks", "--nonblocking", pid}, {"exec", pid, "-c", "pass"}, {"gc", pid}} {
		r := runAs(t, nobody, nobody, args...)
		want(t, r, 4)
		oneLineErr(t, r, "permission denied")
		hint := r.Stderr[strings.Index(r.Stderr, "\n")+1:]
		if !strings.HasPrefix(hint, "hint: ") || !strings.Contains(hint, "root") {
			t.Fatalf("pyglass %v as nobody: want a hint saying to run as root, got %q", args, r.Stderr)
		}
		switch yama {
		case "absent", "0":
			if strings.Contains(hint, "Yama") {
				t.Fatalf("pyglass %v as nobody: Yama is %s here, yet the hint blames it: %q", args, yama, hint)
			}
		default:
			if !strings.Contains(hint, "ptrace_scope is "+yama) {
				t.Fatalf("pyglass %v as nobody: Yama ptrace_scope is %s, the hint does not say so: %q", args, yama, hint)
			}
		}
	}
	healthy(t, roots)
	noTraces(t, roots)
}
