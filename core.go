package pyglass

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pyglass/pyglass/internal/elfsym"
	"github.com/pyglass/pyglass/internal/errs"
	"github.com/pyglass/pyglass/internal/inspect"
	"github.com/pyglass/pyglass/internal/pyproc"
	"github.com/pyglass/pyglass/internal/rootfs"
	"github.com/pyglass/pyglass/target/core"
)

// CoreOptions configure OpenCore.
type CoreOptions struct {
	// Exe is the main program's file, when it is not where the core says
	// (the core's path is used otherwise).
	Exe string
	// Sysroot resolves every file the core names under this directory
	// (the core of a container or a chroot).
	Sysroot string
	// LibPath are directories searched first for the libraries the core
	// names, by base name (copies from the machine the core was made
	// on); a file whose build-id is not the core's is passed over.
	LibPath []string
	// Warn receives one line per problem that does not stop the read (a
	// missing library, a file whose build-id differs from the core's).
	Warn func(string)
}

// Core is a core file opened for reading its Python stacks. It runs no
// code and needs no process: the memory is the core's, the code and
// read-only data the mapped files' (checked against the core's
// build-ids).
type Core struct {
	c    *core.Core
	root *rootfs.Root // the sysroot ("/" when none was given), files resolved inside it
	p    *Process     // the pid, the interpreter and the warnings, as for a live process
	m    *inspect.Memory
	py   *pyproc.Python
}

// OpenCore opens the core file at path (plain, or compressed with gzip, xz, zstd or lz4) and
// finds its interpreter. ErrNotPython when it holds none pyglass can read.
func OpenCore(path string, opt CoreOptions) (_ *Core, err error) {
	defer guard(&err, "core", 0)
	copt := core.Options{Exe: opt.Exe, Sysroot: opt.Sysroot, LibPath: opt.LibPath, Warn: opt.Warn}
	// Files are resolved inside the sysroot (or /), symbolic links
	// included, and only regular files are opened: a core is hostile
	// input, and a FIFO it names must not block pyglass.
	sysroot := opt.Sysroot
	if sysroot == "" {
		sysroot = "/"
	}
	root, err := rootfs.OpenDir(sysroot)
	if err != nil {
		return nil, &Error{Kind: ErrNotPython, Msg: "cannot open the sysroot", Err: err}
	}
	kept := false
	defer func() {
		if !kept { // an error, or a panic guard turns into one
			root.Close()
		}
	}()
	copt.Open = root.OpenFile
	c, err := core.Open(path, copt)
	if err != nil {
		return nil, &Error{Kind: ErrNotPython, Msg: "cannot read core", Err: err, Hint: "give an ELF core file (as written by the kernel, gcore or pyglass dump)"}
	}
	c.CheckFiles()
	var files []pyproc.MappedFile
	idx := map[string]int{}
	for _, f := range c.Files {
		i, ok := idx[f.Path]
		if !ok {
			i = len(files)
			idx[f.Path] = i
			files = append(files, pyproc.MappedFile{Path: f.Path})
		}
		files[i].Maps = append(files[i].Maps, elfsym.Mapping{Start: f.Start, End: f.End, Offset: f.Offset, Read: f.Read, Write: f.Write, Exec: f.Exec})
	}
	const atEntry = 9
	py, err := pyproc.FindPythonIn(c.PID, files, c.ExePath(), c.Auxv[atEntry], func(p string) (io.ReaderAt, error) { return c.OpenFile(p) })
	if err != nil {
		c.Close()
		return nil, convertErr(err)
	}
	p := &Process{pid: c.PID, py: py, onWarn: opt.Warn}
	m, err := inspect.OpenMemory(nil, c, c.PID, py.Version, inspect.ImageOf(py), p.warn)
	if err != nil {
		c.Close()
		return nil, err
	}
	kept = true
	return &Core{c: c, root: root, p: p, py: py, m: m}, nil
}

// Close releases the core and the files it maps.
func (c *Core) Close() error {
	c.root.Close()
	return c.c.Close()
}

// Info describes the core: why it exists, its process and interpreter.
func (c *Core) Info() *CoreInfo {
	cc := c.c
	tgt := cc.Target()
	_, threads := inspect.Info(tgt, c.py, nil)
	ci := &CoreInfo{File: cc.Path, PID: tgt.PID(), Command: cc.Command, Executable: cc.ExePath(), Threads: len(threads),
		Warnings: append(append([]string{}, cc.Warnings...), c.p.warnings...)}
	si := cc.Siginfo
	const sigstop = 19 // a core signal never is: gcore's and pyglass dump's pause
	if si == nil || si.Signo == 0 || si.Signo == sigstop {
		ci.Reason = "made on request (no fatal signal)"
		return ci
	}
	ci.Signal, ci.SigCode = si.Signo, si.Code
	ci.Thread = cc.Threads[0].TID // the kernel writes the dumping thread first
	name := signalName(si.Signo)
	switch {
	case si.Code <= 0 || si.Code == 0x80: // SI_USER, SI_TKILL, SI_QUEUE...; SI_KERNEL
		if si.Code == 0x80 {
			ci.Reason = name + " sent by the kernel"
			break
		}
		ci.SenderPID, ci.SenderUID = si.PID, si.UID
		ci.Reason = fmt.Sprintf("%s sent by process %d (uid %d)", name, si.PID, si.UID)
	case isFault(si.Signo):
		ci.FaultAddr = si.Addr
		ci.Reason = fmt.Sprintf("%s (%s) at %#x", name, faultCode(si.Signo, si.Code), si.Addr)
	default:
		ci.Reason = fmt.Sprintf("%s (code %d)", name, si.Code)
	}
	return ci
}

// Stacks reads every Python thread's stack from the core, as
// Process.Stacks does from a live process (the same read, on the core's
// target.Target). The state of each thread comes from its saved
// registers (the system call it was in).
func (c *Core) Stacks(ctx context.Context, opt StackOptions) (_ *StackDump, err error) {
	defer guard(&err, "stacks", c.c.PID)
	dump, err := inspect.CoreStacks(ctx, c.c.Target(), c.m, c.py, c.c.ExePath(), opt)
	if err != nil {
		return nil, err
	}
	dump.Core = c.Info()
	return dump, nil
}

// signalNames are Linux's signal names (x86-64 and arm64 agree).
var signalNames = [...]string{1: "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
	"SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
	"SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
	"SIGIO", "SIGPWR", "SIGSYS"}

func signalName(n int) string {
	if n > 0 && n < len(signalNames) {
		return signalNames[n]
	}
	return fmt.Sprintf("signal %d", n)
}

func isFault(sig int) bool { return sig == 4 || sig == 7 || sig == 8 || sig == 11 }

// faultCode names the si_code of a fault signal.
func faultCode(sig, code int) string {
	if sig == 11 {
		switch code {
		case 1:
			return "address not mapped"
		case 2:
			return "invalid permissions"
		}
	}
	if sig == 7 && code == 2 {
		return "nonexistent physical address"
	}
	return fmt.Sprintf("code %d", code)
}

// Python describes the core's interpreter.
func (c *Core) Python() PythonInfo {
	py, _ := inspect.Info(c.c.Target(), c.py, nil)
	return py
}

// CoredumpDir is where systemd-coredump stores cores.
const CoredumpDir = "/var/lib/systemd/coredump"

// FindCoredump returns the newest core in systemd-coredump's store dir
// (CoredumpDir when "") of process pid, or of any process when pid is 0.
// Its files are named core.COMM.UID.BOOTID.PID.USEC[.zst|.xz|.lz4]; the
// newest is the one with the largest USEC (the time of the crash).
func FindCoredump(dir string, pid int) (string, error) {
	if dir == "" {
		dir = CoredumpDir
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", &Error{Kind: ErrNoProcess, Msg: "no systemd-coredump store", Err: err, Hint: "give the core with --core FILE"}
	}
	best, bestTime := "", uint64(0)
	for _, e := range ents {
		f := strings.Split(e.Name(), ".")
		// A command name may hold dots: PID and USEC are counted from
		// the end, after the compression suffix.
		if n := len(f); n > 0 && (f[n-1] == "zst" || f[n-1] == "xz" || f[n-1] == "lz4" || f[n-1] == "gz") {
			f = f[:n-1]
		}
		if len(f) < 6 || f[0] != "core" || !e.Type().IsRegular() {
			continue
		}
		p, err1 := strconv.Atoi(f[len(f)-2])
		usec, err2 := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err1 != nil || err2 != nil || (pid != 0 && p != pid) {
			continue
		}
		if best == "" || usec > bestTime {
			best, bestTime = filepath.Join(dir, e.Name()), usec
		}
	}
	if best == "" {
		what := "any process"
		if pid != 0 {
			what = fmt.Sprintf("process %d", pid)
		}
		return "", errs.Newf(ErrNoProcess, "give the core with --core FILE", "no core of %s in %s", what, dir)
	}
	return best, nil
}
