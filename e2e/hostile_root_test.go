package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/internal/testenv"
	"golang.org/x/sys/unix"
)

// A hostile root is a container's root built for the test
// (testenv.MinimalRoot: the host's /usr or the sid root's, and the
// interpreter's prefix, bind-mounted read-only), with symlinks that, read as plain paths from the host, lead
// to victim, a host directory. Inside the root the same path exists: there
// the target really keeps its /tmp, its /src and its /etc/passwd. In every
// test the victim must stay exactly as it was: nothing created, changed,
// read into the output or removed outside the target's root.
type hostileRoot struct {
	dir    string // the root, as the host sees it
	victim string // host directory, also a path inside the root
	opts   []testenv.StartOption
}

// hostileScript imports a module from /src (a symlink in the root) and
// sleeps in it, so that a frame names /src/pyglass_hostile_mod.py.
const hostileScript = `import sys
sys.path.insert(0, '/src')
import pyglass_hostile_mod
print('READY')
pyglass_hostile_mod.wait()
`

const hostileModule = `import time
def wait():
    while True:
        time.sleep(0.05)  # %s
`

func newHostileRoot(t *testing.T, in testenv.Interp) *hostileRoot {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skipf(t, "building a chroot root needs root")
	}
	h := &hostileRoot{}
	var opt testenv.StartOption
	h.dir, opt = testenv.MinimalRoot(t, in)
	h.opts = []testenv.StartOption{opt}
	var err error
	if h.victim, err = os.MkdirTemp("/var/tmp", "pyglass-victim-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(h.victim) })
	inside := filepath.Join(h.dir, h.victim)
	for _, d := range []string{h.victim, inside} {
		mustDo(t, os.MkdirAll(filepath.Join(d, "src"), 0o755))
		mustDo(t, os.Chmod(d, 0o1777))
	}
	mustDo(t, os.WriteFile(filepath.Join(h.victim, "src/pyglass_hostile_mod.py"), []byte(fmt.Sprintf(hostileModule, "HOST FILE, never to be read")), 0o644))
	mustDo(t, os.WriteFile(filepath.Join(inside, "src/pyglass_hostile_mod.py"), []byte(fmt.Sprintf(hostileModule, "source inside the root")), 0o644))
	mustDo(t, os.WriteFile(filepath.Join(h.victim, "passwd"), []byte("hostonly:x:0:0::/:/bin/sh\n"), 0o644))
	mustDo(t, os.WriteFile(filepath.Join(inside, "passwd"), []byte("rootinroot:x:0:0::/:/bin/sh\n"), 0o644))
	mustDo(t, os.MkdirAll(filepath.Join(h.dir, "etc"), 0o755))
	mustDo(t, os.Symlink(filepath.Join(h.victim, "passwd"), filepath.Join(h.dir, "etc/passwd")))
	mustDo(t, os.Symlink(filepath.Join(h.victim, "src"), filepath.Join(h.dir, "src")))
	return h
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tmpLink makes the root's /tmp a symlink to the victim: absolute, or
// relative climbing out with ../.
func (h *hostileRoot) tmpLink(t *testing.T, relative bool) {
	t.Helper()
	link := h.victim
	if relative {
		link = strings.Repeat("../", 2+strings.Count(h.dir, "/")) + strings.TrimPrefix(h.victim, "/")
	}
	mustDo(t, os.Symlink(link, filepath.Join(h.dir, "tmp")))
}

// realTmp makes the root's /tmp a plain directory (mode 1777) and
// returns its host path.
func (h *hostileRoot) realTmp(t *testing.T) string {
	t.Helper()
	tmp := filepath.Join(h.dir, "tmp")
	mustDo(t, os.Mkdir(tmp, 0o1777))
	mustDo(t, os.Chmod(tmp, 0o1777))
	return tmp
}

// snapshot lists the victim's tree: path, mode, size, owner, mtime.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %o %d %d %d\n", p, st.Mode, st.Size, st.Uid, st.Mtim.Nano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func (h *hostileRoot) untouched(t *testing.T, before string) {
	t.Helper()
	if after := snapshot(t, h.victim); after != before {
		t.Fatalf("the host directory %s changed:\nbefore:\n%s\nafter:\n%s", h.victim, before, after)
	}
}

// TestHostileRootSymlinks: a target whose /tmp, /src and /etc/passwd are
// symlinks (absolute, or relative climbing ../../..) that lead, from the
// host, into a host directory. exec works inside the target's root, stacks
// shows the source lines of the root's files, info the root's user names,
// and the host directory is never touched or read.
func TestHostileRootSymlinks(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		for _, relative := range []bool{false, true} {
			t.Run(map[bool]string{false: "absolute", true: "relative"}[relative], func(t *testing.T) {
				h := newHostileRoot(t, in)
				h.tmpLink(t, relative)
				before := snapshot(t, h.victim)
				tg := testenv.Start(t, in, hostileScript, h.opts...)
				pid := strconv.Itoa(tg.PID)

				r := run(t, nil, "exec", pid, "--timeout", "20s", "-c", "import os; print('tmp is ' + os.path.realpath('/tmp'))")
				want(t, r, 0)
				if !strings.Contains(r.Stdout, "tmp is "+h.victim) {
					t.Fatalf("unexpected output: %s", r)
				}
				r = run(t, nil, "stacks", pid)
				want(t, r, 0)
				if !strings.Contains(r.Stdout, "source inside the root") || strings.Contains(r.Stdout, "HOST FILE") {
					t.Fatalf("want the source line of the root's /src file: %s", r)
				}
				r = run(t, nil, "info", pid)
				want(t, r, 0)
				if !strings.Contains(r.Stdout, "rootinroot") || strings.Contains(r.Stdout, "hostonly") {
					t.Fatalf("want the user name from the root's /etc/passwd: %s", r)
				}
				h.untouched(t, before)
				if left := pyglassDirs(t, tg.PID, "/tmp"); len(left) != 0 {
					t.Fatalf("left in the target's /tmp: %v", left)
				}
				healthy(t, tg)
			})
		}
	})
}

// channelName is a name the channel package would make.
func channelName(i int) string { return fmt.Sprintf("pyglass-%024x", 0xbad000+i) }

// TestHostileRootPrecreated: the target's /tmp holds things named like
// pyglass's directories, made by someone else: a symlink to a host
// directory, directories of another user (with and without a lock file),
// all old enough to look stale. exec works and leaves them all as they
// were; the host directory is untouched.
func TestHostileRootPrecreated(t *testing.T) {
	in := anyInterp(t, "3.12")
	h := newHostileRoot(t, in)
	tmp := h.realTmp(t)
	mustDo(t, os.WriteFile(filepath.Join(h.victim, "lock"), nil, 0o600))
	mustDo(t, os.Symlink(h.victim, filepath.Join(tmp, channelName(1))))
	old := time.Now().Add(-time.Hour)
	for i, lock := range []bool{true, false} {
		d := filepath.Join(tmp, channelName(2+i))
		mustDo(t, os.Mkdir(d, 0o700))
		if lock {
			mustDo(t, os.WriteFile(filepath.Join(d, "lock"), nil, 0o600))
			mustDo(t, os.Chown(filepath.Join(d, "lock"), 4242, 4242))
		}
		mustDo(t, os.WriteFile(filepath.Join(d, "theirs"), []byte("x"), 0o600))
		mustDo(t, os.Chown(d, 4242, 4242))
		mustDo(t, os.Chtimes(d, old, old))
	}
	// What is in the target's /tmp (not /tmp's own mtime, which pyglass's
	// directory changes).
	entries := func() string {
		out := ""
		for i := 1; i <= 3; i++ {
			out += snapshot(t, filepath.Join(tmp, channelName(i)))
		}
		return out
	}
	tmpBefore := entries()
	before := snapshot(t, h.victim)
	tg := testenv.Start(t, in, hostileScript, h.opts...)
	r := run(t, nil, "exec", strconv.Itoa(tg.PID), "--timeout", "20s", "-c", "print('ok')")
	want(t, r, 0)
	h.untouched(t, before)
	if after := entries(); after != tmpBefore {
		t.Fatalf("the target's /tmp changed:\nbefore:\n%s\nafter:\n%s", tmpBefore, after)
	}
	healthy(t, tg)
}

// TestHostileRootRace: while execs run, the test, playing the target's
// user, swaps every pyglass directory in the target's /tmp for a symlink
// to a host directory, and /tmp itself for a symlink, in a loop. Each
// exec works (inside the root) or fails soon with a one-line error and
// exit 4, never waits for its timeout; the host directory is untouched.
func TestHostileRootRace(t *testing.T) {
	in := anyInterp(t, "3.12")
	h := newHostileRoot(t, in)
	tmp := h.realTmp(t)
	moved := filepath.Join(h.dir, "moved")
	mustDo(t, os.Mkdir(moved, 0o700))
	before := snapshot(t, h.victim)
	tg := testenv.Start(t, in, hostileScript, h.opts...)
	pid := strconv.Itoa(tg.PID)

	// Baseline: an exec with nobody interfering, in this run.
	base := run(t, nil, "exec", pid, "--timeout", "20s", "-c", "print('ok')")
	want(t, base, 0)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var wg sync.WaitGroup
	swaps := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		name := regexp.MustCompile(`^pyglass-[0-9a-f]{24}$`)
		real := filepath.Join(h.dir, "tmp.real")
		victimInRoot := filepath.Join(h.dir, h.victim)
		for i := 0; ctx.Err() == nil; i++ {
			// /tmp is the real directory here: swap the new pyglass
			// directories (in it, and in the victim's path inside the
			// root, where a /tmp link leads) for symlinks to the victim.
			for _, dir := range []string{tmp, victimInRoot} {
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if e.IsDir() && name.MatchString(e.Name()) {
						p := filepath.Join(dir, e.Name())
						if os.Rename(p, filepath.Join(moved, fmt.Sprintf("%d-%s", i, e.Name()))) == nil {
							os.Symlink(h.victim, p)
							swaps++
						}
					}
				}
			}
			// /tmp itself, for a moment.
			if os.Rename(tmp, real) == nil {
				os.Symlink(h.victim, tmp)
				time.Sleep(time.Millisecond)
				os.Remove(tmp)
				os.Rename(real, tmp)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	// Not the timeout: a refusal comes at the first check after the
	// agent was started (100 ms), an exec that works takes about as long
	// as the undisturbed one (more under this loop's load).
	refuseLimit := 2*base.Took + time.Second
	limit := 3*base.Took + 2*time.Second
	codes := map[int]int{}
	var longest time.Duration
	for i := 0; i < 8; i++ {
		r := run(t, nil, "exec", pid, "--timeout", "20s", "-c", "print('ok')")
		codes[r.Code]++
		longest = max(longest, r.Took)
		switch r.Code {
		case 0:
			if strings.TrimSpace(r.Stdout) != "ok" {
				t.Errorf("exec %d: %s", i, r)
			}
		case 4:
			oneLineErr(t, r, "refusing")
			if r.Took > refuseLimit {
				t.Errorf("exec %d refused after %s (an undisturbed one took %s): %s", i, r.Took, base.Took, r)
			}
		default:
			t.Errorf("exec %d: want exit 0 or 4, got %s", i, r)
		}
		if r.Took > limit {
			t.Errorf("exec %d took %s (an undisturbed one %s): %s", i, r.Took, base.Took, r)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("exit codes %v, %d directories swapped, longest exec %s, baseline exec %s", codes, swaps, longest, base.Took)
	if swaps == 0 {
		t.Fatal("no directory was swapped: the race did not happen")
	}
	h.untouched(t, before)
	healthy(t, tg)
}

// TestLockDirOfAnotherUser: for a user, the lock directory is
// $XDG_RUNTIME_DIR/pyglass; one that is a symlink, belongs to another
// user or is open to others makes exec fail at once with exit 4, and
// nothing is made through it.
func TestLockDirOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skipf(t, "needs root to run pyglass as another user")
	}
	in := anyInterp(t, "3.12", "3.11-debian")
	const nobody = 65534
	tg := testenv.Start(t, in, testenv.Fixture(t, "sleeper.py"), testenv.AsUser("nobody"))
	victim, err := os.MkdirTemp("/var/tmp", "pyglass-victim-")
	mustDo(t, err)
	t.Cleanup(func() { os.RemoveAll(victim) })
	mustDo(t, os.Chown(victim, nobody, nobody))
	before := snapshot(t, victim)
	cases := []struct {
		name string
		make func(p string)
	}{
		{"symlink", func(p string) { mustDo(t, os.Symlink(victim, p)) }},
		{"root's", func(p string) { mustDo(t, os.Mkdir(p, 0o700)) }},
		{"open to others", func(p string) {
			mustDo(t, os.Mkdir(p, 0o700))
			mustDo(t, os.Chmod(p, 0o777))
			mustDo(t, os.Chown(p, nobody, nobody))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			xdg, err := os.MkdirTemp("/var/tmp", "pyglass-xdg-")
			mustDo(t, err)
			t.Cleanup(func() { os.RemoveAll(xdg) })
			mustDo(t, os.Chown(xdg, nobody, nobody))
			c.make(filepath.Join(xdg, "pyglass"))
			t.Setenv("XDG_RUNTIME_DIR", xdg)
			r := runAs(t, nobody, nobody, "exec", strconv.Itoa(tg.PID), "--timeout", "20s", "-c", "print('ran')")
			want(t, r, 4)
			oneLineErr(t, r, "lock directory")
			if after := snapshot(t, victim); after != before {
				t.Fatalf("the symlink's target changed:\n%s", after)
			}
		})
	}
	// A proper one is used.
	xdg, err := os.MkdirTemp("/var/tmp", "pyglass-xdg-")
	mustDo(t, err)
	t.Cleanup(func() { os.RemoveAll(xdg) })
	mustDo(t, os.Chown(xdg, nobody, nobody))
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	r := runAs(t, nobody, nobody, "exec", strconv.Itoa(tg.PID), "-c", "print('ran')")
	want(t, r, 0)
	if st, err := os.Stat(filepath.Join(xdg, "pyglass")); err != nil || !st.IsDir() {
		t.Fatalf("the lock directory was not made in $XDG_RUNTIME_DIR: %v", err)
	}
	healthy(t, tg)
}

// TestHostileRootSourceFIFO: a frame whose file is a FIFO in the target's
// root (the target compiled code under that name) does not make stacks
// block opening it; the frame is shown without a source line.
func TestHostileRootSourceFIFO(t *testing.T) {
	in := anyInterp(t, "3.12")
	h := newHostileRoot(t, in)
	h.realTmp(t)
	mustDo(t, unix.Mkfifo(filepath.Join(h.dir, "fifo"), 0o644))
	script := `import time
exec(compile("def wait():\n    while True:\n        time.sleep(0.05)\n", "/fifo", "exec"))
print('READY')
wait()
`
	tg := testenv.Start(t, in, script, h.opts...)
	r := run(t, nil, "stacks", strconv.Itoa(tg.PID))
	want(t, r, 0)
	if !strings.Contains(r.Stdout, "/fifo") {
		t.Fatalf("want the frame in /fifo: %s", r)
	}
	healthy(t, tg)
}

// TestHostileRootRemoteExec: on 3.14+ the agent of a busy target is
// started through PEP 768, whose script the target reads by its path:
// with /tmp an absolute symlink, that path too is the one inside the
// target's root.
func TestHostileRootRemoteExec(t *testing.T) {
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		if !in.AtLeast(3, 14) {
			testenv.Skipf(t, "%s has no PEP 768 remote execution (3.14+)", in.Label)
		}
		testHostileRootRemoteExec(t, in)
	})
}

func testHostileRootRemoteExec(t *testing.T, in testenv.Interp) {
	h := newHostileRoot(t, in)
	h.tmpLink(t, false)
	before := snapshot(t, h.victim)
	tg := testenv.Start(t, in, "import sys\nprint('READY')\nsys.stdout.flush()\nx = 0\nwhile True:\n    x += 1\n", h.opts...)
	since := testenv.CPUTime(tg.PID, tg.PID)
	testenv.WaitUntil(t, 10*time.Second, "the target runs its loop", func() bool {
		return testenv.BlockedIn(tg.PID, tg.PID) < 0 && testenv.CPUTime(tg.PID, tg.PID)-since > 50*time.Millisecond
	})
	p, err := pyglass.Attach(tg.PID)
	mustDo(t, err)
	var out strings.Builder
	res, err := p.Exec(context.Background(), []byte("print(6*7)"), pyglass.ExecOptions{Stdout: &out, Timeout: 10 * time.Second})
	if err != nil || res.Raised || out.String() != "42\n" {
		t.Fatalf("exec: %v %+v %q", err, res, out.String())
	}
	if !strings.HasPrefix(res.Method, "PEP 768") {
		t.Fatalf("started by %q, want PEP 768", res.Method)
	}
	h.untouched(t, before)
	healthy(t, tg)
}
