package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/pyglass/pyglass"
)

const stacksHelp = `Reads every thread's Python stack from the target's memory: nothing is run
in the target. By default the threads are paused for the fraction of a
millisecond the read takes, so the snapshot is consistent, and resumed at
once; a thread stopped by the user (SIGSTOP) stays stopped. --nonblocking
reads without pausing them (no ptrace at all: it also works on a process
another debugger traces), at the risk of an inconsistent snapshot.

Frames are printed as a Python traceback prints them: outermost first, most
recent call last. With --json:
  {"pid", "python": {"version", "path"},
   "threads": [{"tid" (0: unknown), "name", "main", "holds_gil", "state",
                "frames": [{"function", "file", "line"[, "locals"]}], "error"}]}
--native adds each thread's C frames (unwound from its registers while it
is paused; not with --nonblocking, and from a core too), merged with its
Python frames: each call of the evaluation loop is replaced by the Python
frames it runs, and the interpreter's other C functions before the
innermost Python frame are hidden. Printed as "(C) ADDRESS FUNCTION+OFFSET (LIBRARY)"; in JSON
with "native": true, "address", "offset"; frames that could not be lined
up with the Python ones are in the thread's "native_apart", with
"native_note" saying why. --native-all shows every C frame and the threads
Python does not know (started by C code), with "not_python": true.
--async adds the asyncio tasks (as pyglass tasks reads them, in a second
snapshot) under the thread running their loop (a loop of a pure-Python
asyncio, without its C module, before 3.14: under the loop); with --json they are the dump's "tasks" key, as in pyglass tasks.
Exit status 0 when at least one thread was read (a thread that could not be
read is shown with its "error"); 3 when the process does not exist, is not
Python, is a zombie or exits while being read; 4 when pyglass may not read
it, or may not pause it (traced by another debugger: try --nonblocking).

--core FILE reads a core file instead (ELF, as the kernel, gcore or pyglass
dump write it, or compressed with gzip, xz, zstd or lz4): the report starts with why the core
exists (signal, sender, fault address); JSON adds a "core" object. Files the
core did not dump are read from the files it names (under --sysroot DIR,
--exe PATH for the program, a library first from the --lib-path DIR[:DIR]
directories, by file name); one whose build-id differs is refused.`

func runStacks(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("stacks", stacksHelp, io)
	asJSON := fs.Bool("json", false, "print JSON")
	locals := fs.Bool("locals", false, "show each frame's local variables (short reprs)")
	nonblocking := fs.Bool("nonblocking", false, "read without pausing the threads")
	native := fs.Bool("native", false, "add each thread's C frames, merged with its Python frames")
	nativeAll := fs.Bool("native-all", false, "--native with every C frame (the interpreter's too), and the threads Python does not know (started by C code)")
	async := fs.Bool("async", false, "also list the asyncio tasks of each thread's event loop (see pyglass help tasks)")
	cf := addCoreFlags(fs)
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if *cf.file != "" || *cf.coredump != "" {
		return runStacksCore(ctx, cf, pos, pyglass.StackOptions{Locals: *locals, Native: *native || *nativeAll, NativeAll: *nativeAll}, *asJSON, io)
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass stacks: one PID expected\n")
		return ExitUsage
	}
	if (*native || *nativeAll) && *nonblocking {
		fmt.Fprintf(io.Err, "pyglass stacks: --native reads registers, which needs the threads paused: drop --nonblocking\n")
		return ExitUsage
	}
	p, code, ok := attach(ctx, pos, io, "stacks")
	if !ok {
		return code
	}
	dump, err := p.Stacks(ctx, pyglass.StackOptions{Locals: *locals, NonBlocking: *nonblocking, Native: *native || *nativeAll, NativeAll: *nativeAll})
	if err != nil {
		return fail(io, err)
	}
	if *async {
		return stacksAsync(ctx, io, p, dump, *asJSON, *locals, *nonblocking)
	}
	// Buffered: a write per line was a system call per line.
	w := bufio.NewWriterSize(io.Out, 64<<10)
	if *asJSON {
		writeJSON(w, dump)
	} else {
		renderStacks(w, dump, *locals)
	}
	w.Flush() // an error is io.Out's to report
	for _, t := range dump.Threads {
		if t.Error == "" {
			return ExitOK
		}
	}
	fmt.Fprintf(io.Err, "pyglass: no thread could be read\n")
	return ExitNotPython
}

// nativeLine renders a C frame: its function and library, or the
// library and offset when no symbol names it.
func nativeLine(f pyglass.Frame) string {
	lib := "?"
	if f.File != "" {
		lib = printable(path.Base(f.File))
	}
	if f.Function == "" {
		return fmt.Sprintf("(C) %#x %s+%#x", f.Address, lib, f.Offset)
	}
	return fmt.Sprintf("(C) %#x %s+%#x (%s)", f.Address, printable(f.Function), f.Offset, lib)
}

func renderStacks(w io.Writer, d *pyglass.StackDump, locals bool) {
	// Names, paths and source lines come from the target's memory: shown
	// escaped, they can neither break a line nor drive the terminal.
	fmt.Fprintf(w, "Process %d, Python %s (%s)\n", d.PID, printable(d.Python.Version), printable(d.Python.Path))
	for _, t := range d.Threads {
		var tags []string
		if t.Interpreter > 0 {
			tags = append(tags, fmt.Sprintf("subinterpreter %d", t.Interpreter))
		}
		if t.Main {
			tags = append(tags, "main thread")
		}
		if t.HoldsGIL {
			tags = append(tags, "holds the GIL")
		}
		if t.State != "" {
			tags = append(tags, t.State)
		}
		// Only a thread state of no known task (tid 0) has no name.
		tid, name := strconv.Itoa(t.TID), t.Name
		if t.TID == 0 {
			tid = "?"
		}
		if name == "" {
			name = "?"
		}
		fmt.Fprintf(w, "\nThread %s %q (%s)\n", tid, name, strings.Join(tags, ", "))
		if t.Error != "" {
			fmt.Fprintf(w, "  <unreadable: %s>\n", printable(t.Error))
		}
		if t.NotPython {
			fmt.Fprintf(w, "  <a thread Python does not know>\n")
		} else if len(t.Frames) == 0 && t.Error == "" {
			fmt.Fprintf(w, "  <no Python frames>\n")
		}
		if t.NativeNote != "" {
			fmt.Fprintf(w, "  <%s>\n", printable(t.NativeNote))
		}
		for _, f := range t.Frames {
			if f.Native {
				fmt.Fprintf(w, "  %s\n", nativeLine(f))
				continue
			}
			fmt.Fprintf(w, "  File \"%s\", line %d, in %s\n", printable(f.File), f.Line, printable(f.Function))
			if f.Source != "" {
				fmt.Fprintf(w, "    %s\n", printable(f.Source))
			}
			if locals && len(f.Locals) > 0 {
				keys := make([]string, 0, len(f.Locals))
				for k := range f.Locals {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(w, "        %s = %s\n", printable(k), printable(f.Locals[k]))
				}
			}
		}
		if len(t.NativeApart) > 0 {
			fmt.Fprintf(w, "  Native frames:\n")
			for _, f := range t.NativeApart {
				fmt.Fprintf(w, "  %s\n", nativeLine(f))
			}
		}
		if t.WaitingFor != nil {
			fmt.Fprintf(w, "  %s\n", printable(t.WaitingFor.Line()))
		}
	}
}
