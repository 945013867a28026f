package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Target is a live Python process started by Start. It is killed when the
// test ends.
type Target struct {
	// PID is the host PID of the Python process itself (not of a chroot,
	// sh or unshare wrapper).
	PID int
	// NSPID is the PID of the process inside its own PID namespace (equal
	// to PID unless started with NewPIDNS).
	NSPID int
	// Interp is the interpreter running the script.
	Interp Interp
	// Script is the script's path as the interpreter sees it (inside the
	// chroot or the private mount namespace).
	Script string
	// ScriptHost is the script's path as seen from the host.
	ScriptHost string

	t       testing.TB
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  tailBuffer
	mu      sync.Mutex
	lines   []string
	cursor  int           // index of the first line WaitLine has not consumed
	changed chan struct{} // closed and replaced when lines or state change
	done    bool          // process reaped
	waitErr error
}

type startConfig struct {
	user         string
	privateTmp   bool
	newPIDNS     bool
	root         string
	binds        [][2]string
	env, args    []string
	readyTimeout time.Duration
}

// StartOption changes how Start runs the script.
type StartOption func(*startConfig)

// AsUser runs the interpreter as the named user (e.g. "nobody"), with that
// user's primary group and no supplementary groups. The script is made
// readable to it.
func AsUser(name string) StartOption { return func(c *startConfig) { c.user = name } }

// PrivateTmp runs the interpreter in a new mount namespace with a fresh
// tmpfs on /tmp (`unshare -m`); the script is placed under /var/tmp, which
// the target and the host share.
func PrivateTmp() StartOption { return func(c *startConfig) { c.privateTmp = true } }

// NewPIDNS runs the interpreter in a new PID namespace
// (`unshare -p -f --mount-proc`), where it is PID 1; Target.PID is still
// its host PID.
func NewPIDNS() StartOption { return func(c *startConfig) { c.newPIDNS = true } }

// InRoot runs the interpreter chrooted in dir, a root the test built
// (e.g. with a hostile /tmp), in a new mount namespace where each bind
// {host directory, path inside dir} is bind-mounted read-only, and /proc is
// mounted. The interpreter's Path must be valid inside dir (bind what it
// needs); the script is placed under dir/var/tmp. Target.Interp stays the
// interpreter given to Start.
func InRoot(dir string, binds ...[2]string) StartOption {
	return func(c *startConfig) { c.root, c.binds = dir, binds }
}

// MinimalRoot builds, in a fresh directory, a root in which in can run
// under the returned InRoot option: merged-/usr symlinks (bin, lib, lib64,
// sbin), the host's /usr (the sid root's for a chroot interpreter) and the
// interpreter's own prefix bound read-only. The test adds what else the
// root holds (its /tmp, /etc...).
func MinimalRoot(t testing.TB, in Interp) (string, StartOption) {
	t.Helper()
	dir := t.TempDir()
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(dir, l)); err != nil {
			t.Fatalf("preparing the root: %v", err)
		}
	}
	usr := "/usr"
	if in.Chroot != "" {
		usr = filepath.Join(in.Chroot, "usr")
	}
	binds := [][2]string{{usr, "/usr"}}
	if in.Chroot == "" && !strings.HasPrefix(in.Path, "/usr/") {
		prefix := filepath.Dir(filepath.Dir(in.Path))
		binds = append(binds, [2]string{prefix, prefix})
	}
	return dir, InRoot(dir, binds...)
}

// Env adds "KEY=value" entries to the interpreter's environment.
func Env(kv ...string) StartOption { return func(c *startConfig) { c.env = append(c.env, kv...) } }

// Args appends command-line arguments after the script (sys.argv[1:]).
func Args(args ...string) StartOption {
	return func(c *startConfig) { c.args = append(c.args, args...) }
}

// ReadyTimeout changes how long Start waits for the READY line (default
// 30s).
func ReadyTimeout(d time.Duration) StartOption { return func(c *startConfig) { c.readyTimeout = d } }

// Start writes script to a file the interpreter can read, runs it with
// in (unbuffered, cwd /) and waits until it prints a line starting with
// "READY". It fails the test, with the process's stderr, when the process
// cannot start, exits or stays silent past the timeout. The process (its
// whole process group) is killed with SIGKILL in t.Cleanup; when the test
// failed, its stdout and stderr are logged. Call it from the test's
// goroutine: the process also gets SIGKILL (Pdeathsig) if the OS thread
// that started it exits, which only a goroutine that locked its thread does.
func Start(t testing.TB, in Interp, script string, opts ...StartOption) *Target {
	t.Helper()
	cfg := startConfig{readyTimeout: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	orig := in // the interpreter as the test knows it, for Target.Interp
	if cfg.root != "" {
		in.Chroot = cfg.root
		cfg.privateTmp = false
		for _, d := range append([]string{"/proc", "/var/tmp"}, bindTargets(cfg.binds)...) {
			if err := os.MkdirAll(filepath.Join(cfg.root, d), 0o755); err != nil {
				t.Fatalf("preparing the root: %v", err)
			}
		}
	}
	if (cfg.user != "" || cfg.privateTmp || cfg.newPIDNS || in.Chroot != "") && os.Geteuid() != 0 {
		Skipf(t, "starting %s with these options needs root", in.Label)
	}

	// Where the script lives: the host's temp dir, or a place the target
	// sees under the same path (inside the chroot; /var/tmp when /tmp is
	// private to the target).
	base := os.TempDir()
	if cfg.privateTmp || cfg.root != "" {
		base = "/var/tmp"
	}
	if in.Chroot != "" {
		base = filepath.Join(in.Chroot, base)
	}
	dir, err := os.MkdirTemp(base, "pyglass-test-")
	if err != nil {
		t.Fatalf("creating script directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	hostScript := filepath.Join(dir, "x.py")
	if err := os.WriteFile(hostScript, []byte(script), 0o644); err != nil {
		t.Fatalf("writing script: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("making script directory readable: %v", err)
	}
	inScript := in.Inside(hostScript)

	var uid, gid int = -1, -1
	if cfg.user != "" {
		u, err := user.Lookup(cfg.user)
		if err != nil {
			Skipf(t, "user %q not found: %v", cfg.user, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}

	if uid >= 0 {
		if err := accessibleTo(in.HostPath(), uid, gid); err != nil {
			Skipf(t, "%s cannot run as %s: %v (.ci/run makes /root traversable: chmod o+x /root)", in.Label, cfg.user, err)
		}
	}

	// Build the command line from the inside out. Wrappers need root, so
	// privileges are dropped at the last exec before the interpreter.
	argv := append([]string{in.Path, "-u", inScript}, cfg.args...)
	switch {
	case in.Chroot != "" && uid >= 0:
		argv = append([]string{"chroot", fmt.Sprintf("--userspec=%d:%d", uid, gid), in.Chroot}, argv...)
	case in.Chroot != "":
		argv = append([]string{"chroot", in.Chroot}, argv...)
	case uid >= 0 && (cfg.privateTmp || cfg.newPIDNS):
		argv = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups", "--"}, argv...)
	}
	// Mounts made in the target's own mount namespace: /proc inside the
	// chroot (as a container has), a tmpfs on the private /tmp.
	var mounts []string
	for _, b := range cfg.binds {
		in := shellQuote(filepath.Join(cfg.root, b[1]))
		mounts = append(mounts, "mount --bind "+shellQuote(b[0])+" "+in+" && mount -o remount,bind,ro "+in)
	}
	if in.Chroot != "" {
		mounts = append(mounts, "mount -t proc proc "+shellQuote(filepath.Join(in.Chroot, "proc")))
	}
	if cfg.privateTmp {
		mounts = append(mounts, "mount -t tmpfs pyglass-private-tmp "+shellQuote(filepath.Join(in.Chroot, "/tmp")))
	}
	if len(mounts) > 0 {
		argv = append([]string{"sh", "-c", strings.Join(mounts, " && ") + ` && exec "$@"`, "sh"}, argv...)
	}
	if len(mounts) > 0 || cfg.newPIDNS {
		u := []string{"unshare"}
		if len(mounts) > 0 {
			u = append(u, "-m", "--propagation", "private")
		}
		if cfg.newPIDNS {
			u = append(u, "-p", "-f", "--mount-proc")
		}
		argv = append(u, argv...)
	}

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = append(cleanEnv(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	cmd.Env = append(cmd.Env, cfg.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid >= 0 && argv[0] == in.Path {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	tg := &Target{Interp: orig, Script: inScript, ScriptHost: hostScript, t: t, cmd: cmd, changed: make(chan struct{})}
	cmd.Stderr = &tg.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("creating stdout pipe: %v", err)
	}
	if tg.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("creating stdin pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", strings.Join(argv, " "), err)
	}
	go tg.readLoop(stdout)
	t.Cleanup(tg.cleanup)

	if _, err := tg.waitLine("READY", cfg.readyTimeout); err != nil {
		t.Fatalf("starting %s (%s): %v", in.Label, strings.Join(argv, " "), err)
	}
	tg.PID = cmd.Process.Pid
	if argv[0] == "unshare" && cfg.newPIDNS {
		// unshare -f forks: the interpreter is its only child.
		pid, err := onlyChild(cmd.Process.Pid)
		if err != nil {
			t.Fatalf("finding the interpreter under unshare: %v", err)
		}
		tg.PID = pid
	}
	tg.NSPID = tg.PID
	if ns, err := nsPID(tg.PID); err == nil {
		tg.NSPID = ns
	}
	return tg
}

func bindTargets(binds [][2]string) []string {
	var out []string
	for _, b := range binds {
		out = append(out, b[1])
	}
	return out
}

// cleanEnv is the test's environment without variables that would change
// which Python code the interpreter loads.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (tg *Target) readLoop(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		tg.mu.Lock()
		tg.lines = append(tg.lines, sc.Text())
		tg.notifyLocked()
		tg.mu.Unlock()
	}
	io.Copy(io.Discard, r) // after a too-long line
	err := tg.cmd.Wait()
	tg.mu.Lock()
	tg.done, tg.waitErr = true, err
	tg.notifyLocked()
	tg.mu.Unlock()
}

func (tg *Target) notifyLocked() {
	close(tg.changed)
	tg.changed = make(chan struct{})
}

// Stdout returns the lines the process has printed so far.
func (tg *Target) Stdout() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]string(nil), tg.lines...)
}

// Stderr returns the process's stderr so far (its last 256 KiB).
func (tg *Target) Stderr() string { return tg.stderr.String() }

// WaitLine waits up to timeout for a line starting with prefix, printed
// after the line the previous WaitLine (or Start's READY) consumed, and
// returns it. It fails the test, with stderr, on timeout or exit. Call it
// from the test's goroutine; TryWaitLine returns an error instead.
func (tg *Target) WaitLine(prefix string, timeout time.Duration) string {
	tg.t.Helper()
	l, err := tg.waitLine(prefix, timeout)
	if err != nil {
		tg.t.Fatal(err)
	}
	return l
}

// TryWaitLine is WaitLine returning an error instead of failing the test.
func (tg *Target) TryWaitLine(prefix string, timeout time.Duration) (string, error) {
	return tg.waitLine(prefix, timeout)
}

func (tg *Target) waitLine(prefix string, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tg.mu.Lock()
		for i := tg.cursor; i < len(tg.lines); i++ {
			if strings.HasPrefix(tg.lines[i], prefix) {
				tg.cursor = i + 1
				l := tg.lines[i]
				tg.mu.Unlock()
				return l, nil
			}
		}
		done, werr, ch := tg.done, tg.waitErr, tg.changed
		tg.mu.Unlock()
		if done {
			return "", fmt.Errorf("waiting for a line %q: process exited (%v); stdout:\n%s\nstderr:\n%s", prefix, werr, tg.tail(), tg.Stderr())
		}
		select {
		case <-ch:
		case <-deadline.C:
			return "", fmt.Errorf("waiting for a line %q: none after %v; stdout:\n%s\nstderr:\n%s", prefix, timeout, tg.tail(), tg.Stderr())
		}
	}
}

func (tg *Target) tail() string {
	ls := tg.Stdout()
	if len(ls) > 40 {
		ls = append([]string{"..."}, ls[len(ls)-40:]...)
	}
	return strings.Join(ls, "\n")
}

// Send writes line and a newline to the process's stdin, failing the test
// on error.
func (tg *Target) Send(line string) {
	tg.t.Helper()
	if _, err := io.WriteString(tg.stdin, line+"\n"); err != nil {
		tg.t.Fatalf("writing to target stdin: %v", err)
	}
}

// Exited reports whether the process has ended, and how.
func (tg *Target) Exited() (bool, error) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.done, tg.waitErr
}

// Healthy returns nil when the process is alive, no thread of it is
// stopped (state T or t) or traced (TracerPid != 0); else an error saying
// which thread is in which state. It is the first promise of pyglass: call
// it after every operation on a target.
func (tg *Target) Healthy() error {
	if done, err := tg.Exited(); done {
		return fmt.Errorf("target %d exited (%v); stderr:\n%s", tg.PID, err, tg.Stderr())
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", tg.PID))
	if err != nil {
		return fmt.Errorf("listing threads of %d: %w", tg.PID, err)
	}
	var bad []string
	for i, e := range tasks {
		if i >= 10000 {
			break
		}
		tid := e.Name()
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", tg.PID, tid))
		if err != nil {
			continue // thread ended meanwhile
		}
		s := string(st)
		state := "?"
		if j := strings.LastIndexByte(s, ')'); j >= 0 && j+2 < len(s) {
			state = s[j+2 : j+3]
		}
		tracer := "0"
		if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", tg.PID, tid)); err == nil {
			for _, l := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
					tracer = strings.TrimSpace(v)
				}
			}
		}
		if state == "T" || state == "t" || state == "Z" || tracer != "0" {
			bad = append(bad, fmt.Sprintf("thread %s state %s tracer %s", tid, state, tracer))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("target %d not healthy: %s", tg.PID, strings.Join(bad, "; "))
	}
	return nil
}

// Kill kills the process group with SIGKILL and waits (up to 10s) until the
// process is reaped. Cleanup calls it; tests may call it earlier.
func (tg *Target) Kill() {
	if tg.cmd.Process == nil {
		return
	}
	syscall.Kill(-tg.cmd.Process.Pid, syscall.SIGKILL)
	tg.cmd.Process.Kill()
	tg.stdin.Close()
	tg.Wait(10 * time.Second)
}

func (tg *Target) cleanup() {
	failed := tg.t.Failed()
	ended := "running"
	if done, err := tg.Exited(); done {
		ended = fmt.Sprintf("had exited (%v)", err)
	}
	tg.Kill()
	if failed {
		tg.t.Logf("target %s pid %d %s; stdout:\n%s\nstderr:\n%s", tg.Interp.Label, tg.PID, ended, tg.tail(), tg.Stderr())
	}
}

// onlyChild returns the single child process of pid (scanning /proc, since
// /proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN).
func onlyChild(pid int) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("listing /proc: %w", err)
	}
	var kids []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		s := string(st)
		j := strings.LastIndexByte(s, ')')
		if j < 0 {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, c)
		}
	}
	if len(kids) != 1 {
		return 0, fmt.Errorf("process %d has %d children, want 1", pid, len(kids))
	}
	return kids[0], nil
}

// nsPID returns the innermost PID of pid (the last NSpid field).
func nsPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.Atoi(f[len(f)-1])
			}
		}
	}
	return 0, fmt.Errorf("no NSpid line in /proc/%d/status", pid)
}

// tailBuffer keeps the last 256 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 256 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > tailMax {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// accessibleTo checks that a user uid:gid (no supplementary groups) may
// execute path: every directory on the way must be searchable by it.
func accessibleTo(path string, uid, gid int) error {
	p := "/"
	for _, part := range strings.Split(strings.Trim(filepath.Clean(path), "/"), "/") {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !permits(fi, uid, gid, 0o1) {
			return fmt.Errorf("directory %s is mode %v", p, fi.Mode().Perm())
		}
		p = filepath.Join(p, part)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !permits(fi, uid, gid, 0o1) {
		return fmt.Errorf("%s is mode %v", p, fi.Mode().Perm())
	}
	return nil
}

// permits reports whether uid:gid has the permission bits want (0o1 x,
// 0o4 r) on fi.
func permits(fi os.FileInfo, uid, gid int, want os.FileMode) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return m>>6&want == want
	case int(st.Gid) == gid:
		return m>>3&want == want
	}
	return m&want == want
}
