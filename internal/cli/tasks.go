package cli

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/pyglass/pyglass"
)

const tasksHelp = `Lists the target's asyncio tasks, read from its memory (Python 3.7 to
3.15): nothing is run in the target, and its threads are paused only while
the memory the tasks occupy is copied (about a millisecond for 1,000
tasks; they are decoded after), --nonblocking: not at all. For each task: its id (the
task object's address), name, state, event loop, whether its loop is
running it right now, its coroutine stack (the task's coroutine first, each
at the line where it awaits the next), the thread running its loop, what it awaits (another task, a
gather, a task group, sleep, a lock, an event, a condition, a semaphore, a
queue, a socket, wait_for, another future) and the tasks awaiting it.

--core FILE (or --coredump PID|latest, --exe, --sysroot, --lib-path: as for stacks)
reads the tasks from a core file instead; a sleep's time left is not known
there (its deadline is).

--all also lists done and cancelled tasks still referenced (with the
exception a task ended with); 3.7 to 3.13 only: 3.14 and newer unlink a
task from their lists when it finishes. --tree prints the await tree: the roots are
the tasks nobody awaits, each followed by the tasks it awaits; a task
awaiting many tasks shows the first ones and a count. Await cycles (task A
awaits B awaits A) are listed in their own section with every member.

--json:
  {"pid", "python": {"version", "path"},
   "tasks": [{"id", "name", "state", "interpreter", "thread", "loop", "running",
              "stack": [{"function", "file", "line"}],
              "awaits": {"kind", "object", "type", "tasks": [id...],
                         "deadline", "due_in"},
              "awaited_by": [id...], "exception", "error"}],
   "cycles": [[id...]]}
"deadline" (for a sleep) is when it ends, in seconds of the loop's clock
(loop.time(), time.monotonic() for asyncio's loops), and "due_in" the
seconds from the snapshot to then (negative: overdue, the loop is late);
the table says "sleep, due in 1.2s".
--csv: one line per task: id, name, state, loop, running, awaits kind,
awaited task ids, awaited-by ids (ids separated by spaces), innermost
frame, due_in.
Exit status 0 (also when there is no task); 3 when the process does not
exist, is not Python or its version's tasks cannot be read; 4 when pyglass
may not read or pause it.`

func runTasks(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("tasks", tasksHelp, io)
	asJSON := fs.Bool("json", false, "print JSON")
	asCSV := fs.Bool("csv", false, "print CSV")
	tree := fs.Bool("tree", false, "print the await tree and its cycles")
	all := fs.Bool("all", false, "also list done and cancelled tasks")
	nonblocking := fs.Bool("nonblocking", false, "read without pausing the threads")
	cf := addCoreFlags(fs)
	pos, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) > 1 || *asJSON && *asCSV {
		fmt.Fprintf(io.Err, "pyglass tasks: one PID expected, and at most one of --json and --csv\n")
		return ExitUsage
	}
	// No collection below 256 MiB of heap (a soft limit: collections
	// start when the heap nears it). Reading 1,000 tasks allocates about
	// 3.5 MiB, just past the default first goal of 4 MiB with start-up's;
	// that collection cost 8-10 ms of CPU (marking, and the page faults
	// of the collector's own memory) in a process about to exit. A task
	// keeps at most about 1.3 KiB live: 256 MiB is some 190,000 tasks,
	// more than one interpreter's cpython.MaxAsyncTasks (131,072).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(256 << 20))
	var dump *pyglass.TaskDump
	var err error
	if *cf.file != "" || *cf.coredump != "" {
		c, code, ok := cf.open(io, "tasks", pos)
		if !ok {
			return code
		}
		defer c.Close()
		dump, err = c.Tasks(ctx, pyglass.TaskOptions{All: *all})
	} else {
		p, code, ok := attach(ctx, pos, io, "tasks")
		if !ok {
			return code
		}
		dump, err = p.Tasks(ctx, pyglass.TaskOptions{All: *all, NonBlocking: *nonblocking})
	}
	if err != nil {
		return fail(io, err)
	}
	// Buffered: a line per write was 5,000 system calls for 1,000 tasks.
	w := bufio.NewWriterSize(io.Out, 64<<10)
	switch {
	case *asJSON:
		writeJSON(w, dump)
	case *asCSV:
		renderTasksCSV(w, dump)
	case *tree:
		renderTaskTree(w, dump)
	default:
		renderTasks(w, dump)
	}
	w.Flush() // an error is io.Out's to report
	return ExitOK
}

// taskLabel is a task's id and name, escaped for the terminal.
func taskLabel(byID map[string]*pyglass.AsyncTask, id string) string {
	return string(appendLabel(nil, byID, id))
}

func tasksByID(d *pyglass.TaskDump) map[string]*pyglass.AsyncTask {
	m := make(map[string]*pyglass.AsyncTask, len(d.Tasks))
	for i := range d.Tasks {
		m[d.Tasks[i].ID] = &d.Tasks[i]
	}
	return m
}

// awaitsText describes what a task awaits, in one line.
func awaitsText(byID map[string]*pyglass.AsyncTask, a pyglass.TaskAwaits) string {
	return string(appendAwaits(nil, byID, a))
}

// appendAwaits appends awaitsText's line to b (renderTasks writes a
// thousand of them: a string each was a tenth of what tasks allocates).
func appendAwaits(b []byte, byID map[string]*pyglass.AsyncTask, a pyglass.TaskAwaits) []byte {
	b = append(b, a.Kind...)
	switch {
	case a.Kind == "task" && len(a.Tasks) == 1:
		b = append(b, ' ')
		b = appendLabel(b, byID, a.Tasks[0])
	case len(a.Tasks) > 0:
		b = append(b, " of "...)
		b = strconv.AppendInt(b, int64(len(a.Tasks)), 10)
		b = append(b, " tasks:"...)
		for i, id := range a.Tasks {
			if i == 8 {
				b = append(b, " ... and "...)
				b = strconv.AppendInt(b, int64(len(a.Tasks)-i), 10)
				b = append(b, " more"...)
				break
			}
			b = append(b, ' ')
			b = append(b, id...)
		}
	case a.Type != "":
		b = append(b, " ("...)
		b = append(b, printable(a.Type)...)
		b = append(b, ' ')
		b = append(b, a.Object...)
		b = append(b, ')')
	}
	return append(b, dueText(a)...)
}

// appendLabel appends taskLabel's text to b.
func appendLabel(b []byte, byID map[string]*pyglass.AsyncTask, id string) []byte {
	b = append(b, id...)
	if t, ok := byID[id]; ok && t.Name != "" {
		b = append(b, ' ')
		b = strconv.AppendQuote(b, printable(t.Name))
	}
	return b
}

// dueText is ", due in 1.2s" for a sleep whose deadline is known
// (", overdue by 0.3s" when its loop is late), "" otherwise.
func dueText(a pyglass.TaskAwaits) string {
	if a.DueIn == nil {
		return ""
	}
	d := time.Duration(*a.DueIn * float64(time.Second))
	word := "due in"
	if d < 0 {
		d, word = -d, "overdue by"
	}
	if d >= time.Second {
		d = d.Round(100 * time.Millisecond)
	} else {
		d = d.Round(time.Millisecond)
	}
	return fmt.Sprintf(", %s %s", word, d)
}

// renderTasks writes the table, straight into w's buffer (for 1,000
// tasks, 7,000 lines: fmt's formatting and strings were a tenth of
// pyglass tasks' CPU).
func renderTasks(w *bufio.Writer, d *pyglass.TaskDump) {
	fmt.Fprintf(w, "Process %d, Python %s (%s): %d tasks\n", d.PID, printable(d.Python.Version), printable(d.Python.Path), len(d.Tasks))
	byID := tasksByID(d)
	var scratch []byte
	label := func(id string) {
		scratch = appendLabel(scratch[:0], byID, id)
		w.Write(scratch)
	}
	for i := range d.Tasks {
		t := &d.Tasks[i]
		w.WriteString("\nTask ")
		label(t.ID)
		w.WriteString(" (")
		w.WriteString(t.State)
		if t.Running {
			w.WriteString(", running now")
		}
		if t.Exception != "" {
			w.WriteString(", raised ")
			w.WriteString(printable(t.Exception))
		}
		w.WriteString(") loop ")
		w.WriteString(t.Loop)
		w.WriteByte('\n')
		if t.Awaits.Kind != "" {
			w.WriteString("  awaits: ")
			scratch = appendAwaits(scratch[:0], byID, t.Awaits)
			w.Write(scratch)
			w.WriteByte('\n')
		}
		if len(t.AwaitedBy) > 0 {
			w.WriteString("  awaited by: ")
			for j, id := range t.AwaitedBy {
				if j > 0 {
					w.WriteString(", ")
				}
				label(id)
			}
			w.WriteByte('\n')
		}
		for _, f := range t.Stack {
			w.WriteString("    ")
			w.WriteString(printable(f.Function))
			w.WriteString(" (")
			w.WriteString(printable(f.File))
			w.WriteByte(':')
			scratch = strconv.AppendInt(scratch[:0], int64(f.Line), 10)
			w.Write(scratch)
			w.WriteString(")\n")
		}
		if t.Error != "" {
			w.WriteString("  error: ")
			w.WriteString(printable(t.Error))
			w.WriteByte('\n')
		}
	}
	renderCycles(w, d, byID)
}

func renderCycles(w io.Writer, d *pyglass.TaskDump, byID map[string]*pyglass.AsyncTask) {
	if len(d.Cycles) == 0 {
		return
	}
	fmt.Fprintf(w, "\nAwait cycles (%d):\n", len(d.Cycles))
	for _, c := range d.Cycles {
		var parts []string
		for _, id := range c {
			parts = append(parts, taskLabel(byID, id))
		}
		fmt.Fprintf(w, "  %s awaits %s\n", strings.Join(parts, " awaits "), taskLabel(byID, c[0]))
	}
}

// maxTreeChildren is how many of a task's awaited tasks the tree shows
// before folding the rest into a count.
const maxTreeChildren = 8

func renderTaskTree(w io.Writer, d *pyglass.TaskDump) {
	fmt.Fprintf(w, "Process %d, Python %s (%s): %d tasks\n", d.PID, printable(d.Python.Version), printable(d.Python.Path), len(d.Tasks))
	byID := tasksByID(d)
	shown := map[string]bool{}
	var walk func(id, indent string)
	walk = func(id, indent string) {
		t := byID[id]
		line := indent + taskLabel(byID, id)
		if t == nil {
			fmt.Fprintln(w, line)
			return
		}
		if t.Running {
			line += " [running]"
		}
		if n := len(t.Stack); n > 0 {
			f := t.Stack[n-1]
			line += fmt.Sprintf(" in %s (%s:%d)", printable(f.Function), printable(f.File), f.Line)
		}
		if t.Awaits.Kind != "" && t.Awaits.Kind != "task" {
			line += " awaiting " + t.Awaits.Kind + dueText(t.Awaits)
		}
		if shown[id] {
			fmt.Fprintln(w, line+" (see above)")
			return
		}
		shown[id] = true
		fmt.Fprintln(w, line)
		for i, c := range t.Awaits.Tasks {
			if i == maxTreeChildren && len(t.Awaits.Tasks) > maxTreeChildren+1 {
				fmt.Fprintf(w, "%s  ... and %d more tasks\n", indent, len(t.Awaits.Tasks)-i)
				break
			}
			walk(c, indent+"  ")
		}
	}
	for _, t := range d.Tasks {
		if len(t.AwaitedBy) == 0 {
			fmt.Fprintln(w)
			walk(t.ID, "")
		}
	}
	renderCycles(w, d, byID)
}

func renderTasksCSV(w io.Writer, d *pyglass.TaskDump) {
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "name", "state", "loop", "running", "awaits", "awaits_tasks", "awaited_by", "innermost", "due_in"})
	for _, t := range d.Tasks {
		inner := ""
		if n := len(t.Stack); n > 0 {
			f := t.Stack[n-1]
			inner = fmt.Sprintf("%s (%s:%d)", printable(f.Function), printable(f.File), f.Line)
		}
		due := ""
		if t.Awaits.DueIn != nil {
			due = strconv.FormatFloat(*t.Awaits.DueIn, 'f', 3, 64)
		}
		cw.Write([]string{t.ID, printable(t.Name), t.State, t.Loop, strconv.FormatBool(t.Running), t.Awaits.Kind,
			strings.Join(t.Awaits.Tasks, " "), strings.Join(t.AwaitedBy, " "), inner, due})
	}
	cw.Flush()
}

// stacksAsync ends `pyglass stacks --async`: the stacks, then the tasks
// of each thread's loop (read in a second snapshot).
func stacksAsync(ctx context.Context, io IO, p *pyglass.Process, dump *pyglass.StackDump, asJSON, locals, nonblocking bool) ExitCode {
	tasks, err := p.Tasks(ctx, pyglass.TaskOptions{NonBlocking: nonblocking})
	if err != nil {
		return fail(io, err)
	}
	if asJSON {
		writeJSON(io.Out, struct {
			*pyglass.StackDump
			Tasks  []pyglass.AsyncTask `json:"tasks"`
			Cycles [][]string          `json:"cycles"`
		}{dump, tasks.Tasks, tasks.Cycles})
		return ExitOK
	}
	renderStacks(io.Out, dump, locals)
	byID := tasksByID(tasks)
	groups := map[string][]*pyglass.AsyncTask{}
	var order []string
	for i := range tasks.Tasks {
		t := &tasks.Tasks[i]
		key := fmt.Sprintf("Thread %d: asyncio tasks of loop %s", t.Thread, t.Loop)
		if t.Thread == 0 {
			key = fmt.Sprintf("asyncio tasks of loop %s (thread unknown)", t.Loop)
		}
		if groups[key] == nil {
			order = append(order, key)
		}
		groups[key] = append(groups[key], t)
	}
	for _, key := range order {
		fmt.Fprintf(io.Out, "\n%s (%d)\n", key, len(groups[key]))
		for _, t := range groups[key] {
			line := "  " + taskLabel(byID, t.ID)
			if t.Running {
				line += " [running]"
			}
			if n := len(t.Stack); n > 0 {
				f := t.Stack[n-1]
				line += fmt.Sprintf(" in %s (%s:%d)", printable(f.Function), printable(f.File), f.Line)
			}
			if t.Awaits.Kind != "" {
				line += " awaiting " + awaitsText(byID, t.Awaits)
			}
			fmt.Fprintln(io.Out, line)
		}
	}
	renderCycles(io.Out, tasks, byID)
	return ExitOK
}
