package cli

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdamore/tcell/v2"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/profile"
)

// The terminal view, drawn with tcell: the terminal's alternate screen,
// redrawn every interval, on each key and on a resize. tcell sends
// nothing the terminal must answer (no colour or cursor query), so the
// view never waits on a terminal that answers nothing (a bare
// pseudo-terminal, a serial console); TestStartOnSilentTerminal checks
// that pyglass's start does not either.

// topView is the terminal view's state; only topTerminal's loop uses it.
type topView struct {
	p      *pyglass.Process
	st     *topState
	by     profile.SortBy
	paused bool
	frozen []string // the view while paused
	width  int
	height int
}

// key applies one key; it reports whether the view should quit.
func (v *topView) key(k rune) bool {
	switch k {
	case 'q', 'Q', 0x03, 0x1b: // q, Ctrl-C (a key on the view, not SIGINT), Esc
		return true
	case 's':
		v.by = (v.by + 1) % 3
	case 't':
		v.st.nextThread()
	case 'i':
		v.st.mu.Lock()
		v.st.idle = !v.st.idle
		v.st.mu.Unlock()
	case 'p':
		v.paused = !v.paused
		if v.paused {
			v.frozen = v.lines()
		}
	case 'r':
		v.st.reset()
	}
	return false
}

// keyOf returns the key of a tcell key event as key takes it, or 0 for
// keys the view has no use for (arrows, function keys).
func keyOf(ev *tcell.EventKey) rune {
	switch ev.Key() {
	case tcell.KeyRune:
		if ev.Modifiers()&(tcell.ModCtrl|tcell.ModAlt) != 0 {
			return 0
		}
		return ev.Rune()
	case tcell.KeyCtrlC:
		return 0x03
	case tcell.KeyEscape:
		return 0x1b
	}
	return 0
}

// lines renders the view into lines no wider than the terminal.
func (v *topView) lines() []string {
	var b strings.Builder
	rows := 20
	if v.height > 8 {
		rows = v.height - 7
	}
	v.st.render(&b, v.p, v.by, rows, v.width, v.paused)
	b.WriteString("\n[s] sort  [t] thread  [i] idle  [p] pause  [r] reset  [q] quit")
	ls := strings.Split(b.String(), "\n")
	if v.height > 0 && len(ls) > v.height {
		ls = ls[:v.height]
	}
	return ls
}

// draw puts a frame on the screen (tcell sends only what changed).
func (v *topView) draw(scr tcell.Screen) {
	ls := v.frozen
	if !v.paused {
		ls = v.lines()
	}
	scr.Clear()
	for y, l := range ls {
		scr.PutStr(0, y, l)
	}
	scr.Show()
}

// cutAt cuts s to at most width bytes, at a character boundary (0: no
// limit). Bytes, not columns: a wide character takes two columns and
// three bytes, so the line fits.
func cutAt(s string, width int) string {
	if width <= 0 || len(s) <= width {
		return s
	}
	i := width
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

func topTerminal(ctx context.Context, cancel func(), p *pyglass.Process, st *topState, interval time.Duration, sampled chan struct{}, io IO) ExitCode {
	// The terminal of stdin and stdout, as the caller checked, not
	// /dev/tty: a process without a controlling terminal (setsid) draws
	// all the same.
	var scr tcell.Screen
	tty, err := tcell.NewStdIoTty()
	if err == nil {
		scr, err = tcell.NewTerminfoScreenFromTty(tty)
	}
	if err == nil {
		err = scr.Init()
	}
	if err != nil {
		fmt.Fprintf(io.Err, "pyglass top: cannot draw on this terminal: %v (hint: pipe the output for a plain table)\n", err)
		cancel()
		<-sampled
		return ExitInternal
	}
	defer scr.Fini()
	scr.HideCursor()

	v := &topView{p: p, st: st}
	v.width, v.height = scr.Size()
	events := make(chan tcell.Event, 16)
	stopEvents := make(chan struct{})
	defer close(stopEvents)
	go scr.ChannelEvents(events, stopEvents)

	quit := func() ExitCode {
		cancel()
		<-sampled
		return topExit(st, io)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	v.draw(scr)
	for {
		select {
		case <-ctx.Done():
			return quit()
		case <-sampled:
			return topExit(st, io)
		case <-t.C:
			st.tick(time.Now())
		case ev := <-events:
			switch ev := ev.(type) {
			case *tcell.EventResize:
				v.width, v.height = ev.Size()
				scr.Sync()
			case *tcell.EventKey:
				if v.key(keyOf(ev)) {
					return quit()
				}
			}
		}
		v.draw(scr)
	}
}
