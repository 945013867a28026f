package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

// TestModTidy: go.mod and go.sum are what `go mod tidy` makes of them
// (direct dependencies are not marked indirect, no checksum is missing).
// It runs offline, from the module cache the build filled.
func TestModTidy(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Skipf(t, "the go command is not on PATH")
	}
	cmd := exec.Command(goBin, "mod", "tidy", "-diff")
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(cmd.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	if strings.Contains(string(out), "GOPROXY=off") || strings.Contains(string(out), "module lookup disabled") {
		testenv.Skipf(t, "a module go mod tidy needs is not in the module cache and the network is off: %s", strings.TrimSpace(string(out)))
	}
	t.Fatalf("go mod tidy would change go.mod/go.sum (run it and commit the result): %v\n%s", err, out)
}
