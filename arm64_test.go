package pyglass_test

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// arm64Packages are the packages whose tests run built for arm64: those
// that decode what a target hands pyglass (its memory, its core, its
// ELF files) and write profiles. Their code must not depend on the
// machine pyglass runs on where the target's machine decides (a core
// may come from another). The packages that talk to the kernel
// (ptrace, /proc, registers, unwinding the host's libraries) cannot be
// checked this way: user-mode emulation runs the system calls of the
// host.
var arm64Packages = []string{"./cpython/...", "./profile/...", "./target/core/...", "./internal/elfsym/..."}

// TestArm64Decoders runs the tests of arm64Packages built for arm64,
// under qemu-aarch64 (user-mode emulation). Their live tests read this
// machine's (amd64) interpreters, whose structures are the same.
func TestArm64Decoders(t *testing.T) {
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		testenv.Skipf(t, "runs from linux/amd64 only (this is %s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	if testing.Short() {
		testenv.Skipf(t, "-short: building and emulating the arm64 tests takes a minute")
	}
	qemu, err := exec.LookPath("qemu-aarch64")
	if err != nil {
		testenv.Skipf(t, "qemu-aarch64 is not installed (Debian: qemu-user): the arm64 build's decoders are not run")
	}
	args := append([]string{"test", "-count=1", "-exec", qemu}, arm64Packages...)
	cmd := exec.Command(testenv.GoTool(), args...)
	cmd.Dir = testenv.RepoRoot(t)
	for _, kv := range os.Environ() {
		// (the interpreters the emulated tests cover are this run's
		// amd64 ones: they are not counted twice)
		if !strings.HasPrefix(kv, "PYGLASS_COVERAGE_FILE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GOARCH=arm64", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("GOARCH=arm64 go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ok ") {
			t.Log(line)
		}
	}
}
