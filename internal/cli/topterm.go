package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/pyglass/pyglass"
	"github.com/pyglass/pyglass/profile"
)

// The terminal view: the terminal in raw mode on its alternate screen,
// redrawn every interval and on each key and resize. It sends nothing the
// terminal must answer, so it never waits on one that does not (a bare
// pseudo-terminal, a serial console).

const (
	altScreenOn  = "\x1b[?1049h\x1b[?25l" // alternate screen, cursor hidden
	altScreenOff = "\x1b[?25h\x1b[?1049l"
)

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
func (v *topView) key(k byte) bool {
	switch k {
	case 'q', 'Q', 0x03, 0x1b: // q, Ctrl-C (raw mode: no SIGINT), Esc
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

// draw writes a frame: from the top left, each line cleared to its end
// (raw mode: the terminal adds no carriage return), the rest of the screen
// cleared.
func (v *topView) draw(w *bufio.Writer) {
	ls := v.frozen
	if !v.paused {
		ls = v.lines()
	}
	w.WriteString("\x1b[H")
	for i, l := range ls {
		l = cutAt(l, v.width)
		w.WriteString(l)
		w.WriteString("\x1b[K")
		if i < len(ls)-1 {
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\x1b[J")
	w.Flush()
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
	in, inOK := io.In.(*os.File)
	out, outOK := io.Out.(*os.File)
	if c, ok := io.Out.(*checkedWriter); ok {
		out, outOK = c.w.(*os.File)
	}
	if !inOK || !outOK {
		return topPiped(ctx, p, st, interval, 20, sampled, io)
	}
	old, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		fmt.Fprintf(io.Err, "pyglass top: cannot set the terminal to raw mode: %v (hint: pipe the output for a plain table)\n", err)
		return ExitInternal
	}
	w := bufio.NewWriterSize(io.Out, 64<<10)
	w.WriteString(altScreenOn)
	w.Flush()
	defer func() {
		w.WriteString(altScreenOff)
		w.Flush()
		term.Restore(int(in.Fd()), old)
	}()

	v := &topView{p: p, st: st}
	size := func() {
		if wd, ht, err := term.GetSize(int(out.Fd())); err == nil {
			v.width, v.height = wd, ht
		}
	}
	size()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)

	// The keys, read by a goroutine that ends with the input (it may
	// outlive the view until the next key or the end of the process).
	keys := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				select {
				case keys <- append([]byte(nil), buf[:n]...):
				case <-sampled:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()

	t := time.NewTicker(interval)
	defer t.Stop()
	v.draw(w)
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-sampled
			return topExit(st, io)
		case <-sampled:
			return topExit(st, io)
		case <-winch:
			size()
		case <-t.C:
			st.tick()
		case b := <-keys:
			// An escape sequence (arrows, function keys) is one read that
			// starts with Esc: not a quit.
			if len(b) > 1 && b[0] == 0x1b {
				continue
			}
			for _, k := range b {
				if v.key(k) {
					cancel()
					<-sampled
					return topExit(st, io)
				}
			}
		}
		v.draw(w)
	}
}
