package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/pyglass/pyglass"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func runVersion(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("version", "", io)
	if _, code, ok := parse(fs, args, io); !ok {
		return code
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = "devel-" + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(io.Out, "pyglass %s\n", v)
	return ExitOK
}

// attach parses the PID argument and attaches.
func attach(ctx context.Context, pos []string, io IO, name string) (*pyglass.Process, ExitCode, bool) {
	if len(pos) < 1 {
		fmt.Fprintf(io.Err, "pyglass %s: missing PID\nUsage: pyglass %s %s\n", name, name, lookup(name).args)
		return nil, ExitUsage, false
	}
	pid, ok := parsePID(pos[0], io)
	if !ok {
		return nil, ExitUsage, false
	}
	p, err := pyglass.Attach(pid)
	if err != nil {
		return nil, fail(io, err), false
	}
	warnTo(p, io)
	signalsReady(ctx) // before anything that pauses or changes p
	return p, 0, true
}

// warnTo prints p's warnings on stderr, one line each.
func warnTo(p *pyglass.Process, io IO) {
	p.SetWarningHandler(func(msg string) { fmt.Fprintf(io.Err, "pyglass: warning: %s\n", msg) })
}

func runInfo(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("info", `Reads /proc and the interpreter's ELF image; runs nothing in the target and
does not stop it. The Python version is read from the target's memory or
binary, never by running the target's interpreter.`, io)
	asJSON := fs.Bool("json", false, "print JSON")
	cf := addCoreFlags(fs)
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if *cf.file != "" || *cf.coredump != "" {
		return runInfoCore(cf, pos, *asJSON, io)
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass info: one PID expected\n")
		return ExitUsage
	}
	p, code, ok := attach(ctx, pos, io, "info")
	if !ok {
		return code
	}
	info := p.Info()
	if *asJSON {
		writeJSON(io.Out, info)
		return ExitOK
	}
	tw := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	pidStr := fmt.Sprint(info.PID)
	if info.NSPID != 0 && info.NSPID != info.PID {
		pidStr += fmt.Sprintf(" (%d in its PID namespace)", info.NSPID)
	}
	fmt.Fprintf(tw, "pid:\t%s\n", pidStr)
	fmt.Fprintf(tw, "user:\t%s (uid %d)\n", printable(info.User), info.UID)
	fmt.Fprintf(tw, "command:\t%s\n", printable(strings.Join(info.Cmdline, " ")))
	fmt.Fprintf(tw, "state:\t%s\n", info.State)
	fmt.Fprintf(tw, "python:\t%s\n", info.Python.Version)
	link := "linked into the executable"
	if info.Python.Shared {
		link = "shared library"
	}
	fmt.Fprintf(tw, "interpreter:\t%s (%s)\n", printable(info.Python.Path), link)
	fmt.Fprintf(tw, "namespaces:\tmount %s, pid %s\n", sameOther(info.OtherMountNS), sameOther(info.OtherPIDNS))
	if info.TracerPID != 0 {
		fmt.Fprintf(tw, "traced by:\tPID %d\n", info.TracerPID)
	}
	if info.CanExec {
		fmt.Fprintf(tw, "exec:\tyes, %s\n", info.ExecMethod)
	} else {
		fmt.Fprintf(tw, "exec:\tno: %s\n", info.ExecReason)
	}
	fmt.Fprintf(tw, "threads:\t%d\n", len(info.Threads))
	tw.Flush()
	tw = tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TID\tNAME\tSTATE")
	for _, t := range info.Threads {
		name := t.Name
		if name == "" {
			name = "(" + t.Comm + ")"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\n", t.TID, printable(name), t.State)
	}
	tw.Flush()
	return ExitOK
}

func sameOther(other bool) string {
	if other {
		return "other than pyglass's"
	}
	return "same as pyglass's"
}
