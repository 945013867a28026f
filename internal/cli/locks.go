package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/pyglass/pyglass"
)

const locksHelp = `Says why a process is stuck: for each thread, what it waits for (a Lock,
an RLock, a Condition, an Event, a queue, a thread it joins, a system call),
where (the frame and the name the waiting code gives the object) and which
thread holds it, then the cycles of the wait-for graph. Nothing is run in
the target: its threads are paused for the snapshot, as for stacks.

An RLock records its owner, a joined thread its id: those holders are read
from the objects. A plain Lock has no owner: its holder is inferred from
the other threads' frames (a with block over it, or the lock in their
locals) and marked "inferred"; when the frames do not say, it is unknown.
The first line is the verdict; it says deadlock only for a cycle.
"since" is how long a blocked thread had not run when pyglass looked (the
kernel scheduler's last run of it): its wait began then, unless a pause by
a debugger (pyglass's own included) made it run in between.
--core FILE (or --coredump PID|latest, --exe, --sysroot, --lib-path: as for stacks)
reads a core file instead: what the threads waited for when it was made
(the system call from each thread's saved registers; the processes and
descriptors waited on are not named, and there is no since).
With --json:
  {"pid", "verdict": {"kind", "summary"},
   "threads": [{"tid", "name", "state", "waits_for": {"kind", "object", "type",
                "where", "holder_tid", "holder_inferred", "evidence",
                "since_seconds"},
                "native": ["function (file)"...] (the GIL holder in C: its C
                                                  functions, innermost first)}],
   "cycles": [[tid...]], "core": {...} (with --core, as in stacks)}
Exit status as for stacks.`

func runLocks(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("locks", locksHelp, io)
	asJSON := fs.Bool("json", false, "print JSON")
	cf := addCoreFlags(fs)
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(io.Err, "pyglass locks: one PID expected\n")
		return ExitUsage
	}
	var rep *pyglass.LockReport
	var err error
	if *cf.file != "" || *cf.coredump != "" {
		c, code, ok := cf.open(io, "locks", pos)
		if !ok {
			return code
		}
		defer c.Close()
		rep, err = c.Locks(ctx)
	} else {
		p, code, ok := attach(ctx, pos, io, "locks")
		if !ok {
			return code
		}
		rep, err = p.Locks(ctx)
	}
	if err != nil {
		return fail(io, err)
	}
	if *asJSON {
		writeJSON(io.Out, rep)
	} else {
		renderLocks(io.Out, rep)
	}
	return ExitOK
}

func renderLocks(w io.Writer, r *pyglass.LockReport) {
	fmt.Fprintf(w, "%s\n", printable(r.Verdict.Summary))
	for _, c := range r.Cycles {
		fmt.Fprintf(w, "cycle: %v\n", c)
	}
	for _, t := range r.Threads {
		wf := t.WaitsFor
		fmt.Fprintf(w, "\nThread %d %q (%s)\n", t.TID, printable(t.Name), printable(t.State))
		line := "  " + wf.Kind
		if wf.Type != "" || wf.Object != "" {
			line += ": " + printable(wf.Type)
			if wf.Object != "" {
				line += " " + wf.Object
			}
		}
		if wf.Where != "" {
			line += " (" + printable(wf.Where) + ")"
		}
		if wf.HolderTID != 0 {
			by := "held by"
			if wf.Kind == pyglass.WaitJoin {
				by = "thread"
			}
			if wf.HolderInferred {
				by += " (inferred)"
			}
			line += fmt.Sprintf(", %s %d", by, wf.HolderTID)
		}
		fmt.Fprintln(w, line)
		if wf.Evidence != "" {
			fmt.Fprintf(w, "    %s\n", printable(wf.Evidence))
		}
		switch {
		case wf.SinceSeconds != nil:
			fmt.Fprintf(w, "    since: %.1f s ago (last ran then)\n", *wf.SinceSeconds)
		case wf.Kind != pyglass.WaitNone:
			fmt.Fprintf(w, "    since: unknown\n")
		}
		if len(t.Native) > 0 {
			fmt.Fprintf(w, "    in C, keeping the GIL:\n")
			for _, f := range t.Native {
				fmt.Fprintf(w, "      %s\n", printable(f))
			}
		}
	}
}
