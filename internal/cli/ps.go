package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/pyglass/pyglass"
)

const psHelp = `Python processes are found by what they have mapped (an interpreter in the
executable or a libpython), not by their name: renamed binaries and programs
embedding Python are listed. Processes pyglass may not read are left out.

NAME lists only the processes whose command line contains it (or whose PID
it is); several NAMEs list the processes matching any. --tree shows who
started whom (a server's master and its workers): each process under its
parent when that is listed too; with --json each entry then has its
"children".

Control characters in command lines are shown escaped (\n, \t, \x1b). On a
terminal the command is cut to the terminal's width; piped, it never is.`

func runPS(ctx context.Context, args []string, io IO) ExitCode {
	fs := newFlags("ps", psHelp, io)
	asJSON := fs.Bool("json", false, "print JSON")
	tree := fs.Bool("tree", false, "show parents and their children (e.g. a master and its workers)")
	names, code, ok := parse(fs, args, io)
	if !ok {
		return code
	}
	list, err := pyglass.List()
	if err != nil {
		return fail(io, err)
	}
	list = filterPS(list, names)
	switch {
	case *asJSON && *tree:
		writeJSON(io.Out, psForest(list))
	case *asJSON:
		writeJSON(io.Out, list)
	default:
		renderPS(io.Out, list, *tree, io.Width)
	}
	return ExitOK
}

// filterPS keeps the processes one of names matches (all when none).
func filterPS(list []pyglass.Summary, names []string) []pyglass.Summary {
	out := []pyglass.Summary{}
	for _, s := range list {
		if len(names) == 0 || psMatches(s, names) {
			out = append(out, s)
		}
	}
	return out
}

func psMatches(s pyglass.Summary, names []string) bool {
	cmd := strings.Join(s.Cmdline, " ")
	for _, n := range names {
		if n == strconv.Itoa(s.PID) || strings.Contains(cmd, n) {
			return true
		}
	}
	return false
}

// psNode is one process of the --tree JSON.
type psNode struct {
	pyglass.Summary
	Children []*psNode `json:"children"`
}

// psForest arranges list by parent: a process whose parent is not listed
// is a root. Roots and children are in PID order.
func psForest(list []pyglass.Summary) []*psNode {
	nodes := make(map[int]*psNode, len(list))
	for _, s := range list {
		nodes[s.PID] = &psNode{Summary: s, Children: []*psNode{}}
	}
	roots := []*psNode{}
	for _, s := range list {
		n := nodes[s.PID]
		if parent, ok := nodes[s.PPID]; ok && s.PPID != s.PID {
			parent.Children = append(parent.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	for _, n := range nodes {
		sort.Slice(n.Children, func(i, j int) bool { return n.Children[i].PID < n.Children[j].PID })
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].PID < roots[j].PID })
	return roots
}

// renderPS prints the table; with tree, children follow their parent with
// their command indented. width > 0 (a terminal's) cuts the command so
// that each line fits.
func renderPS(w io.Writer, list []pyglass.Summary, tree bool, width int) {
	type line struct {
		s      pyglass.Summary
		prefix string
	}
	var lines []line
	if tree {
		var walk func(ns []*psNode, indent string, top bool)
		walk = func(ns []*psNode, indent string, top bool) {
			for i, n := range ns {
				last := i == len(ns)-1
				branch, next := "├─ ", "│  "
				if last {
					branch, next = "└─ ", "   "
				}
				if top {
					branch, next = "", ""
				}
				lines = append(lines, line{n.Summary, indent + branch})
				walk(n.Children, indent+next, false)
			}
		}
		walk(psForest(list), "", true)
	} else {
		for _, s := range list {
			lines = append(lines, line{s: s})
		}
	}
	// The columns before COMMAND, as the tabwriter will pad them.
	rows := [][]string{{"PID", "PPID", "USER", "PYTHON"}}
	for _, l := range lines {
		rows = append(rows, []string{strconv.Itoa(l.s.PID), strconv.Itoa(l.s.PPID), printable(l.s.User), l.s.Version})
	}
	widths := make([]int, 4)
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	lead := 0
	for _, n := range widths {
		lead += n + 2
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tCOMMAND\n", strings.Join(rows[0], "\t"))
	for i, l := range lines {
		cmd := l.prefix + printable(strings.Join(l.s.Cmdline, " "))
		if width > 0 {
			cmd = truncate(cmd, max(width-lead, 10))
		}
		fmt.Fprintf(tw, "%s\t%s\n", strings.Join(rows[i+1], "\t"), cmd)
	}
	tw.Flush()
}

// printable escapes what a terminal would act on or a table would break
// on: control characters (\n, \t, \x1b...), other unprintable runes and
// invalid UTF-8. Text from a target is shown this way, never raw.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == ' ' || unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

// truncate cuts s to n runes, the last one an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
