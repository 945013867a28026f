package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
)

// TestInfoEveryInterpreter: version (as the target reports it), the file
// holding the interpreter and whether it is shared, threads with their
// Python names, and that code can be run; nothing is run to learn it.
func TestInfoEveryInterpreter(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.Args("threads=2"))
		ready := ""
		for _, l := range tg.Stdout() {
			if strings.HasPrefix(l, "READY") {
				ready = l
			}
		}
		r := run(t, nil, "info", strconv.Itoa(tg.PID), "--json")
		want(t, r, 0)
		var info pyglass.Info
		if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
			t.Fatalf("info --json: %v\n%s", err, r.Stdout)
		}
		if !strings.Contains(ready, "version="+info.Python.Version+" ") {
			t.Fatalf("version %q, the target says %q", info.Python.Version, ready)
		}
		if info.Python.Shared != in.Shared {
			t.Fatalf("shared = %v, want %v (%s)", info.Python.Shared, in.Shared, info.Python.Path)
		}
		if !info.CanExec || info.ExecReason != "" || info.TracerPID != 0 {
			t.Fatalf("exec not possible: %+v", info)
		}
		names := map[string]bool{}
		for _, th := range info.Threads {
			names[th.Name] = true
		}
		if len(info.Threads) != 3 || !names["MainThread"] || !names["worker-1"] || !names["worker-2"] {
			t.Fatalf("threads: %+v", info.Threads)
		}
		// The interpreter's file as the target sees it: inside the chroot,
		// without the chroot's prefix.
		if in.Chroot != "" && info.Python.Path != in.Path {
			t.Fatalf("interpreter path %q, the target sees %q", info.Python.Path, in.Path)
		}
		if (in.Chroot != "") != info.OtherMountNS {
			t.Fatalf("other mount namespace = %v for %s", info.OtherMountNS, in.Label)
		}
		// The text form says the same.
		r = run(t, nil, "info", strconv.Itoa(tg.PID))
		want(t, r, 0)
		if !strings.Contains(r.Stdout, info.Python.Version) || !strings.Contains(r.Stdout, "worker-2") {
			t.Fatalf("info text: %s", r)
		}
		healthy(t, tg)
	})
}

// TestInfoNamespacesAndUser: a target running as nobody in its own PID and
// mount namespaces is described as such.
func TestInfoNamespacesAndUser(t *testing.T) {
	in := anyInterp(t, "3.12")
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.NewPIDNS(), testenv.PrivateTmp())
	r := run(t, nil, "info", strconv.Itoa(tg.PID), "--json")
	want(t, r, 0)
	var info pyglass.Info
	json.Unmarshal([]byte(r.Stdout), &info)
	if !info.OtherMountNS || !info.OtherPIDNS || info.NSPID != tg.NSPID || info.NSPID == info.PID {
		t.Fatalf("namespaces: %+v (ns pid %d)", info, tg.NSPID)
	}
	tg2 := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.AsUser("nobody"))
	r = run(t, nil, "info", strconv.Itoa(tg2.PID), "--json")
	want(t, r, 0)
	json.Unmarshal([]byte(r.Stdout), &info)
	if info.User != "nobody" || info.UID != 65534 {
		t.Fatalf("user: %+v", info)
	}
}

// TestPS: ps lists Python processes found by what they map: a renamed copy
// of an interpreter is listed, a shell script named python3-config is not.
func TestPS(t *testing.T) {
	in := anyInterp(t, "3.11-debian", "3.12")
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
	dir := t.TempDir()
	renamed := filepath.Join(dir, "myserver")
	data, err := os.ReadFile("/usr/bin/python3.11")
	var other *exec.Cmd
	if err == nil {
		os.WriteFile(renamed, data, 0o755)
		other = exec.Command(renamed, "-c", "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)")
		up, err := other.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Start(); err != nil {
			t.Fatal(err)
		}
		defer other.Wait()
		defer other.Process.Kill()
		// The renamed interpreter is up once it has printed its line.
		if _, err := io.ReadFull(up, make([]byte, 3)); err != nil {
			t.Fatalf("the renamed interpreter did not start: %v", err)
		}
	}
	fake := filepath.Join(dir, "python3-config")
	os.WriteFile(fake, []byte("#!/bin/sh\nsleep 60\n"), 0o755)
	cfg := exec.Command(fake)
	if err := cfg.Start(); err != nil { // returns once the script runs
		t.Fatal(err)
	}
	defer cfg.Wait()
	defer cfg.Process.Kill()

	r := run(t, nil, "ps", "--json")
	want(t, r, 0)
	var list []pyglass.Summary
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("ps --json: %v", err)
	}
	found := map[int]pyglass.Summary{}
	for _, s := range list {
		found[s.PID] = s
	}
	if s, ok := found[tg.PID]; !ok || !strings.HasPrefix(s.Version, in.Version()) {
		t.Fatalf("ps does not list the target %d as %s: %+v", tg.PID, in.Version(), list)
	}
	if other != nil {
		if _, ok := found[other.Process.Pid]; !ok {
			t.Fatalf("ps does not list the renamed interpreter %d", other.Process.Pid)
		}
	}
	for pid := range found {
		if pid == cfg.Process.Pid {
			t.Fatalf("ps lists python3-config (a shell script)")
		}
	}
	r = run(t, nil, "ps")
	want(t, r, 0)
	if !strings.Contains(r.Stdout, strconv.Itoa(tg.PID)) {
		t.Fatalf("ps text does not list %d: %s", tg.PID, r.Stdout)
	}
}

// runAs runs pyglass with args as the given user.
func runAs(t *testing.T, uid, gid int, args ...string) result {
	t.Helper()
	cmd := exec.Command(testenv.BuildPyglass(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNotRoot: pyglass run by an ordinary user works on that user's own
// processes (exec, stacks) and says "permission denied" (exit 4) for
// another user's.
func TestNotRoot(t *testing.T) {
	in := anyInterp(t, "3.11-debian", "3.12")
	const nobody = 65534
	mine := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.AsUser("nobody"))
	r := runAs(t, nobody, nobody, "exec", strconv.Itoa(mine.PID), "-c", "import os; print(os.geteuid())")
	want(t, r, 0)
	if r.Stdout != "65534\n" {
		t.Fatalf("exec as nobody: %s", r)
	}
	r = runAs(t, nobody, nobody, "stacks", "--json", strconv.Itoa(mine.PID))
	want(t, r, 0)
	healthy(t, mine)

	roots := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"))
	r = runAs(t, nobody, nobody, "exec", strconv.Itoa(roots.PID), "-c", "pass")
	want(t, r, 4)
	oneLineErr(t, r, "permission")
	healthy(t, roots)
	noTraces(t, roots)
}
