package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pyglass/pyglass"
)

// coreFlags are the flags that make stacks and info read a core file.
type coreFlags struct {
	file, exe, sysroot, coredump, libPath *string
}

func addCoreFlags(fs *flag.FlagSet) coreFlags {
	return coreFlags{
		file:     fs.String("core", "", "read a core `FILE` (ELF, or compressed: gzip, xz, zstd, lz4) instead of a live process"),
		exe:      fs.String("exe", "", "with --core: the main program's `PATH`, when not where the core says"),
		coredump: fs.String("coredump", "", "read the newest core of `PID` (or 'latest': of any process) in systemd-coredump's store ($PYGLASS_COREDUMP_DIR, default /var/lib/systemd/coredump)"),
		sysroot:  fs.String("sysroot", "", "with --core: find the files the core names under `DIR` (a container's or chroot's root)"),
		libPath:  fs.String("lib-path", "", "with --core: look for the libraries the core names in these `DIR[:DIR]` first, by file name (one whose build-id is not the one the core recorded is passed over)"),
	}
}

// openCore opens the core named by --core; warnings go to stderr.
func (cf coreFlags) open(io IO, name string, pos []string) (*pyglass.Core, ExitCode, bool) {
	if len(pos) > 0 {
		fmt.Fprintf(io.Err, "pyglass %s: no PID with --core\n", name)
		return nil, ExitUsage, false
	}
	file := *cf.file
	if *cf.coredump != "" {
		pid := 0
		if *cf.coredump != "latest" {
			n, ok := parsePID(*cf.coredump, io)
			if !ok {
				return nil, ExitUsage, false
			}
			pid = n
		}
		found, err := pyglass.FindCoredump(os.Getenv("PYGLASS_COREDUMP_DIR"), pid)
		if err != nil {
			return nil, fail(io, err), false
		}
		file = found
	}
	c, err := pyglass.OpenCore(file, pyglass.CoreOptions{Exe: *cf.exe, Sysroot: *cf.sysroot, LibPath: splitPath(*cf.libPath),
		Warn: func(s string) { fmt.Fprintf(io.Err, "pyglass: warning: %s\n", printable(s)) }})
	if err != nil {
		return nil, fail(io, err), false
	}
	return c, ExitOK, true
}

func runStacksCore(ctx context.Context, cf coreFlags, pos []string, opt pyglass.StackOptions, asJSON bool, io IO) ExitCode {
	c, code, ok := cf.open(io, "stacks", pos)
	if !ok {
		return code
	}
	defer c.Close()
	dump, err := c.Stacks(ctx, opt)
	if err != nil {
		return fail(io, err)
	}
	if asJSON {
		writeJSON(io.Out, dump)
	} else {
		renderCore(io.Out, dump.Core)
		renderStacks(io.Out, dump, opt.Locals)
	}
	for _, t := range dump.Threads {
		if t.Error == "" {
			return ExitOK
		}
	}
	fmt.Fprintf(io.Err, "pyglass: no thread could be read\n")
	return ExitNotPython
}

// renderCore says why the core exists and what it is of.
func renderCore(w io.Writer, ci *pyglass.CoreInfo) {
	fmt.Fprintf(w, "Core %s: %s\n", printable(ci.File), printable(ci.Reason))
	if ci.Thread != 0 {
		fmt.Fprintf(w, "Signal delivered to thread %d\n", ci.Thread)
	}
	fmt.Fprintf(w, "Executable %s, command %s\n", printable(ci.Executable), printable(ci.Command))
}

func runInfoCore(cf coreFlags, pos []string, asJSON bool, io IO) ExitCode {
	c, code, ok := cf.open(io, "info", pos)
	if !ok {
		return code
	}
	defer c.Close()
	ci := c.Info()
	py := c.Python()
	if asJSON {
		writeJSON(io.Out, struct {
			*pyglass.CoreInfo
			Python pyglass.PythonInfo `json:"python"`
		}{ci, py})
		return ExitOK
	}
	fmt.Fprintf(io.Out, "core:\t%s\nreason:\t%s\npid:\t%d\ncommand:\t%s\nexecutable:\t%s\npython:\t%s (%s)\nthreads:\t%d\n",
		printable(ci.File), printable(ci.Reason), ci.PID, printable(ci.Command), printable(ci.Executable),
		py.Version, printable(py.Path), ci.Threads)
	if len(ci.Warnings) > 0 {
		fmt.Fprintf(io.Out, "warnings:\t%s\n", printable(strings.Join(ci.Warnings, "; ")))
	}
	return ExitOK
}

const dumpHelp = `Writes a standard ELF core file of the process, as gdb's gcore does, that
pyglass (stacks --core, info --core), gdb and other tools read. The threads
are paused while their registers and memory are copied (the pause is
printed), then released: the process runs on, untraced. The core names the
files as this machine sees them. pyglass refuses to write a core that would
leave less than 64 MiB free on the file system (exit 6).`

func runDump(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("dump", dumpHelp, io)
	out := fs.String("o", "", "write the core to `FILE` (default core.PID in the current directory); it must not exist")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass dump: one PID expected\n")
		return ExitUsage
	}
	exists := func(path string) ExitCode {
		fmt.Fprintf(io.Err, "pyglass dump: %s exists\nhint: pyglass never overwrites a file: remove it or write elsewhere with -o FILE\n", printable(path))
		return ExitUsage
	}
	if *out != "" {
		if _, err := os.Lstat(*out); err == nil {
			return exists(*out)
		}
	}
	p, code, ok := attach(ctx, pos, io, "dump")
	if !ok {
		return code
	}
	path := *out
	if path == "" {
		path = fmt.Sprintf("core.%d", p.PID())
	}
	res, err := p.Dump(path)
	if errors.Is(err, os.ErrExist) {
		return exists(path)
	}
	if err != nil {
		return fail(io, err)
	}
	if *asJSON {
		writeJSON(io.Out, res)
	} else {
		fmt.Fprintf(io.Out, "wrote %s: %d threads, %d MiB; the threads were paused for %s\n", printable(res.Path), res.Threads, res.Bytes>>20, res.Paused.Round(time.Microsecond))
	}
	return ExitOK
}

// splitPath splits a list of directories separated by colons (as
// $PATH), empty entries left out.
func splitPath(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ":") {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}
