package pyproc_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/internal/pyproc/pyproctest"
)

// TestPermissionDenied inspects a root-owned Python from a copy of this
// test binary running as nobody: the error must be ErrPermission with a
// hint, on one line.
func TestPermissionDenied(t *testing.T) {
	if pid := os.Getenv("PYGLASS_INSPECT_PID"); pid != "" {
		n, _ := strconv.Atoi(pid)
		_, err := pyproc.Inspect(n)
		fmt.Printf("permission=%v hint=%q err=%q\n", errors.Is(err, pyproc.ErrPermission), errs.HintOf(err), err)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as nobody")
	}
	tg := pyproctest.StartInterp(t, pyproctest.System(t))
	dir, err := os.MkdirTemp("", "pyglass-perm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pyproc.test")
	copyFile(t, self, bin, 0o755)
	cmd := exec.Command(bin, "-test.run=^TestPermissionDenied$")
	cmd.Env = append(os.Environ(), "PYGLASS_INSPECT_PID="+strconv.Itoa(tg.PID()))
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running as nobody: %v\n%s", err, out)
	}
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "permission=") {
			line = l
		}
	}
	t.Log(line)
	if !strings.HasPrefix(line, "permission=true ") || strings.Contains(line, `hint=""`) {
		t.Errorf("as nobody: %s", out)
	}
}
