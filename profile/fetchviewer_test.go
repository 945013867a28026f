package profile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchViewerChecksThePin: scripts/fetch-viewer.sh refuses a tarball
// whose sha512 is not the pinned one, and leaves the viewer directory as
// it was.
func TestFetchViewerChecksThePin(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run scripts/fetch-viewer.sh")
	}
	dir := t.TempDir()
	dest := filepath.Join(dir, "viewer")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "speedscope.tgz")
	if err := os.WriteFile(bad, []byte("not speedscope"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, filepath.Join("..", "scripts", "fetch-viewer.sh"), bad)
	cmd.Env = append(os.Environ(), "PYGLASS_VIEWER_DIR="+dest)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sha512") || !strings.Contains(string(out), "not using it") {
		t.Fatalf("a tarball that is not the pinned one: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Fatalf("the script wrote %d files from a refused tarball", len(ents))
	}
}
