// Package agent holds the Python agent that pyglass runs inside a target
// process and the Go side of the protocol spoken with it.
//
// Life cycle: pyglass creates a private directory D in the target's mount
// namespace and listens on D/s (package internal/channel does both for
// pyglass; Listen and Accept here do the same for tests and programs that
// already have a directory), writes every file of Files into D, makes a
// new thread of the target run Bootstrap(D), and wraps the agent's
// connection with NewConn. The agent sends a hello, receives one request
// (Exec or Shell), serves it, removes D and sends its exit status. If D or
// the socket is missing when the bootstrap runs, the agent does nothing.
//
// # Frames
//
// Both directions carry frames: one type byte, a 4-byte big-endian payload
// length, the payload. Lengths above MaxFrame are a protocol error.
//
// Agent to pyglass: FrameHello once (key=value lines), then FrameStdout and
// FrameStderr (raw bytes, UTF-8 for text, in the order the code wrote
// them), FramePrompt (shell only: the next prompt, ">>> " or "... "), and
// finally FrameExit (the decimal exit status) after D has been removed and
// the target's sys.stdout, sys.stderr, sys.stdin and sys.displayhook are
// restored.
//
// Pyglass to agent: the request is zero or more FrameParam frames
// ("key=value", the value is raw bytes up to the end of the payload: op,
// code, filename, namespace) ended by FrameGo. In a shell: FrameInput (one
// line), FrameInterrupt (discard the pending block, like Ctrl-C in the
// standard console) and FrameClose (end the session, like Ctrl-D). A shell
// request with "mode=script" (piped input) runs the lines as a script, each
// statement once complete (see Conn.StartScript); FrameClose ends the input.
//
// While code runs (exec, a shell statement or script), pyglass may send
// FrameBreak: the agent raises KeyboardInterrupt in the code, in its own
// thread only (PyThreadState_SetAsyncExc; the target's threads are never
// interrupted), as Ctrl-C does in python; a break at any other time, or
// less than half a second after the last one raised, is dropped. The
// agent reads these frames on a second thread of its own, the reader,
// which lives as long as the session: the session waits for it to end
// before it ends. Code blocked in a C call that does not check for
// interrupts (a sleep, a lock, I/O) gets the exception when that call
// returns.
//
// # Exit status
//
// 0 when the code ran to completion; 1 when it raised (the traceback is on
// the stderr stream) or did not compile; for SystemExit the interpreter's
// own rule: no code or None is 0, an integer is that integer modulo 256
// (as a process exit status), anything else is printed on stderr and
// gives 1. SystemExit and KeyboardInterrupt never
// leave the agent's thread: the target keeps running. Status 2 means the
// agent refused the request.
//
// # What the agent changes in the target, and for how long
//
// While at least one session is active: sys._pyglass_hub (shared by
// concurrent sessions) and routers on sys.stdout, sys.stderr, sys.stdin
// (unless it is None) and sys.displayhook that dispatch by thread: the
// session's thread sees its session, every other thread the original
// objects. The last session to end puts the originals back if the routers
// are still installed (a router someone saved and re-installs later only
// forwards). In a shell on __main__, "_" is bound only if it was free or
// is the session's own last result, and removed at the end. Threads that
// the user's code starts print to the target's own streams. Modules the
// agent imports (_socket, codecs, gc, time, traceback, linecache, __future__,
// fcntl on 2.7, ctypes after the first break) stay in sys.modules:
// removing them is unsafe while other code may hold or import them.
//
// After a session no object the agent made is left in the target, neither
// reachable nor as cyclic garbage awaiting the collector (leak reports
// would show it): the agent defines no class (a class refers to itself),
// the routers are codecs.StreamWriter/StreamReader instances holding
// closures, which keep working (passing through to the original streams)
// in any thread after the session ended, and the agent's globals are
// emptied when it returns. The namespace the user's code ran in is the
// user's: a fresh one is emptied only when nothing outside it refers to
// it (so hooks and threads the code left keep working). A child forked
// during a session (3.7+) closes its copy of the agent's socket and gets
// the original streams back, through one os.register_at_fork handler per
// process (sys._pyglass_atfork); after a fork that ran no handler (2.7,
// 3.6, uwsgi's C fork) the next session in the child cleans up first. The
// agent's locks, get_ident and sleep
// are the interpreter's own even under gevent or eventlet. Before sending the exit status, the last
// session waits (usually 4 ms) until no thread of the target is inside or
// between the writes of a print to the routers it uninstalled: print holds
// a borrowed reference to sys.stdout across its writes, and freeing the
// router under it would crash the target. If the target keeps writing to
// them, the wait goes on after the exit status, for up to 10 s, after
// which the routers are kept for good in sys._pyglass_kept.
package agent

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The agent's files are embedded as byte slices, which the linker
// initialises statically: an embed.FS read at start-up would copy them at
// every run of pyglass, whatever the command.
var (
	//go:embed agent.py
	agentPy []byte
	//go:embed core.py
	corePy []byte
	//go:embed shell.py
	shellPy []byte
)

// Files is the agent's Python source (Python 2.7 and 3.6+): file name to
// content. Every file must be written into D before the bootstrap runs.
// ScriptName (the loader, which Bootstrap runs) loads core.py, which
// serves exec sessions, and shell.py only for a shell session; each is
// compiled in short chunks so that the target's other threads never wait
// long for the GIL. The contents must not be modified.
var Files = map[string][]byte{
	ScriptName: agentPy,
	"core.py":  corePy,
	"shell.py": shellPy,
}

// ProtocolVersion is the protocol version the agent announces in its hello.
const ProtocolVersion = 1

// Frame types. The agent's copy of these is at the top of agent.py.
const (
	FrameHello     byte = 'h' // agent: key=value lines (see Hello)
	FrameStdout    byte = 'o' // agent: bytes written to sys.stdout
	FrameStderr    byte = 'e' // agent: bytes written to sys.stderr, tracebacks
	FrameExit      byte = 'x' // agent: decimal exit status, last frame
	FramePrompt    byte = 'p' // agent: shell prompt, the agent waits for input
	FrameParam     byte = 'q' // pyglass: one request parameter "key=value"
	FrameGo        byte = 'g' // pyglass: end of the request, start serving
	FrameInput     byte = 'i' // pyglass: one shell input line
	FrameInterrupt byte = 'k' // pyglass: discard the shell's pending block
	FrameClose     byte = 'c' // pyglass: end the session
	FrameBreak     byte = 'b' // pyglass: raise KeyboardInterrupt in the code running now
)

// Request parameter keys and values.
const (
	ParamOp        = "op"        // OpExec or OpShell
	ParamCode      = "code"      // exec: the program's source bytes
	ParamFilename  = "filename"  // exec: "<string>" for -c, else the script path
	ParamNamespace = "namespace" // exec, shell: NamespaceFresh (default) or NamespaceMain
	ParamMode      = "mode"      // shell: ModeScript for piped input
	OpExec         = "exec"
	OpShell        = "shell"
	NamespaceFresh = "fresh"
	NamespaceMain  = "main"
	ModeScript     = "script"
)

// MaxFrame is the largest payload either side accepts.
const MaxFrame = 64 << 20

// Prompts the agent sends in a shell session.
const (
	PromptPrimary   = ">>> "
	PromptSecondary = "... "
)

var (
	// ErrProtocol is returned when the peer sends something the protocol
	// does not allow (wrong frame type, oversized frame, bad hello).
	ErrProtocol = errors.New("agent protocol error")
	// ErrGone is returned when the agent closed the connection before
	// sending its exit status.
	ErrGone = errors.New("agent connection closed before the exit status")
)

// WriteFrame writes one frame. Returns an error wrapping ErrProtocol if
// payload exceeds MaxFrame.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("writing %q frame of %d bytes: %w", typ, len(payload), ErrProtocol)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("writing %q frame: %w", typ, err)
	}
	return nil
}

// frameChunk is what ReadFrame takes at once for a payload: a frame's
// length is the peer's claim (the agent runs in the target), so memory
// is taken as the bytes come, not for the length claimed.
const frameChunk = 64 << 10

// ReadFrame reads one frame. It returns io.EOF if the stream ends cleanly
// before a frame, io.ErrUnexpectedEOF inside one, and an error wrapping
// ErrProtocol for a length above MaxFrame.
func ReadFrame(r io.Reader) (typ byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("reading %q frame of %d bytes: %w", hdr[0], n, ErrProtocol)
	}
	payload = make([]byte, 0, min(n, frameChunk))
	for len(payload) < n {
		k := min(n-len(payload), max(frameChunk, len(payload)))
		payload = slices.Grow(payload, k)
		m, err := io.ReadFull(r, payload[len(payload):len(payload)+k])
		payload = payload[:len(payload)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, fmt.Errorf("reading %q frame: %w", hdr[0], err)
		}
	}
	return hdr[0], payload, nil
}

// Bootstrap returns the Python source that makes a thread of the target
// load and run D/agent.py (ScriptName), for PyRun_SimpleString (it runs in __main__'s
// globals) or as a script file (PEP 768). It binds no name in __main__,
// prints nothing and lets no exception out: if D is gone it does nothing.
// It works on Python 2.7 (tuple-form exec statement) and 3.x.
func Bootstrap(dir string) string {
	d := pyPathLiteral(dir)
	var b strings.Builder
	b.WriteString("try:\n")
	b.WriteString("    exec(compile((lambda f: (f.read(), f.close())[0])(open(" + d + " + '/agent.py', 'rb')), " +
		"'<pyglass-agent>', 'exec'), {'__name__': '__pyglass_agent__', '__builtins__': __builtins__, '_PYGLASS_DIR': " + d + "})\n")
	b.WriteString("except BaseException:\n")
	b.WriteString("    pass\n")
	return b.String()
}

// pyPathLiteral returns a Python expression, valid on 2.7 and 3.x, whose
// value is the path p as the native str type (bytes on 2.7; on 3.x the
// surrogateescape decoding, which os functions encode back to the same
// bytes whatever the file system encoding).
func pyPathLiteral(p string) string {
	ascii := true
	for i := 0; i < len(p); i++ {
		if p[i] >= 0x80 {
			ascii = false
			break
		}
	}
	lit := pyBytesBody(p)
	if ascii {
		return "'" + lit + "'"
	}
	return "(b'" + lit + "' if str is bytes else b'" + lit + "'.decode('ascii', 'surrogateescape'))"
}

// pyBytesBody escapes p for the inside of a single-quoted Python literal,
// keeping printable ASCII and escaping everything else as \xNN.
func pyBytesBody(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\x%02x", c)
		}
	}
	return b.String()
}
