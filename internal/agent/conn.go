package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// SocketName is the name of the Unix socket inside the private directory.
const SocketName = "s"

// ScriptName is the name of the agent's loader among Files, the file
// Bootstrap runs from the private directory.
const ScriptName = "agent.py"

// Listen creates the Unix stream socket D/s that the agent connects to,
// owned by uid:gid (the target's user, so that the agent may connect) with
// mode 0600. uid or gid -1 leaves that id unchanged. The directory must
// exist. Returns the listener; closing it removes the socket file.
func Listen(dir string, uid, gid int) (*net.UnixListener, error) {
	path := filepath.Join(dir, SocketName)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening for the agent: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("setting the agent socket's mode: %w", err)
	}
	if uid != -1 || gid != -1 {
		if err := os.Lchown(path, uid, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("setting the agent socket's owner: %w", err)
		}
	}
	return l, nil
}

// Accept waits up to timeout for the agent to connect to l and reads its
// hello. A zero timeout waits forever. Returns os.ErrDeadlineExceeded
// (wrapped) if the agent did not connect in time.
func Accept(l *net.UnixListener, timeout time.Duration) (*Conn, error) {
	if timeout > 0 {
		if err := l.SetDeadline(time.Now().Add(timeout)); err != nil {
			return nil, fmt.Errorf("setting the accept deadline: %w", err)
		}
		defer l.SetDeadline(time.Time{})
	}
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("waiting for the agent to connect: %w", err)
	}
	ac, err := NewConn(c, timeout)
	if err != nil {
		c.Close()
		return nil, err
	}
	return ac, nil
}

// Hello is what the agent reports about itself when it connects. Ids are
// as the target sees them (its PID namespace).
type Hello struct {
	Protocol   int    // ProtocolVersion of the agent
	PID        int    // os.getpid()
	TID        int    // native thread id of the agent's thread, 0 if unknown
	Ident      uint64 // threading ident of the agent's thread
	Version    string // "3.11.7"
	HexVersion uint32 // sys.hexversion
	Executable string // sys.executable
	// CFork names what forks the process in C without taking the GIL
	// ("uwsgi": a uwsgi master without py-call-uwsgi-fork-hooks), "" when
	// nothing known does: a child forked so while the agent's thread
	// holds the GIL inherits a GIL no thread of it will release.
	CFork string
}

// Conn is a connection to one agent. It serves one request: Exec, or a
// shell started with StartShell or StartScript. Its methods are not safe
// for concurrent use, except Close and Break.
type Conn struct {
	c      net.Conn
	r      *bufio.Reader
	hello  Hello
	status int
	done   bool
}

// NewConn reads the agent's hello from c, waiting up to timeout (zero:
// forever). Returns an error wrapping ErrProtocol if the first frame is not
// a valid hello.
func NewConn(c net.Conn, timeout time.Duration) (*Conn, error) {
	ac := &Conn{c: c, r: bufio.NewReaderSize(c, 256<<10)}
	if timeout > 0 {
		c.SetReadDeadline(time.Now().Add(timeout))
		defer c.SetReadDeadline(time.Time{})
	}
	typ, payload, err := ReadFrame(ac.r)
	if err != nil {
		return nil, fmt.Errorf("reading the agent's hello: %w", err)
	}
	if typ != FrameHello {
		return nil, fmt.Errorf("reading the agent's hello: got frame %q: %w", typ, ErrProtocol)
	}
	h, err := parseHello(payload)
	if err != nil {
		return nil, err
	}
	ac.hello = h
	return ac, nil
}

func parseHello(p []byte) (Hello, error) {
	var h Hello
	for _, line := range bytes.Split(p, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		s := string(v)
		var err error
		switch string(k) {
		case "protocol":
			h.Protocol, err = strconv.Atoi(s)
		case "pid":
			h.PID, err = strconv.Atoi(s)
		case "tid":
			h.TID, err = strconv.Atoi(s)
		case "ident":
			h.Ident, err = strconv.ParseUint(s, 10, 64)
		case "version":
			h.Version = s
		case "hexversion":
			var x uint64
			x, err = strconv.ParseUint(s, 10, 32)
			h.HexVersion = uint32(x)
		case "executable":
			h.Executable = s
		case "cfork":
			h.CFork = s
		}
		if err != nil {
			return Hello{}, fmt.Errorf("parsing the agent's hello field %s: %w", k, ErrProtocol)
		}
	}
	if h.Protocol != ProtocolVersion {
		return Hello{}, fmt.Errorf("agent speaks protocol %d, want %d: %w", h.Protocol, ProtocolVersion, ErrProtocol)
	}
	return h, nil
}

// Hello returns what the agent reported when it connected.
func (c *Conn) Hello() Hello { return c.hello }

// Close closes the connection. An agent whose client vanished stops
// within about a second, removes its directory and runs nothing more.
func (c *Conn) Close() error { return c.c.Close() }

func (c *Conn) sendRequest(params [][2][]byte) error {
	var buf bytes.Buffer
	for _, kv := range params {
		p := make([]byte, 0, len(kv[0])+1+len(kv[1]))
		p = append(append(append(p, kv[0]...), '='), kv[1]...)
		if err := WriteFrame(&buf, FrameParam, p); err != nil {
			return fmt.Errorf("sending the request: %w", err)
		}
	}
	WriteFrame(&buf, FrameGo, nil)
	if _, err := c.c.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("sending the request: %w", err)
	}
	return nil
}

// Exec runs code in the target, in a fresh namespace whose __name__ is
// "__pyglass__" (ExecIn with NamespaceFresh). filename is "<string>" for code given on the command line
// or the script's path. What the code writes to sys.stdout and sys.stderr
// is copied to stdout and stderr as it arrives (nil discards). Returns the
// exit status (see the package doc); err is non-nil only when the
// conversation failed (ErrGone if the agent vanished before reporting a
// status).
func (c *Conn) Exec(code []byte, filename string, stdout, stderr io.Writer) (status int, err error) {
	return c.ExecIn(NamespaceFresh, code, filename, stdout, stderr)
}

// ExecIn is Exec in the namespace named by namespace: NamespaceFresh, or
// NamespaceMain for __main__.__dict__. A fresh namespace stays intact as
// long as something the code left behind refers to it (a function
// installed as a hook, a thread); the agent empties it only when nothing
// does.
func (c *Conn) ExecIn(namespace string, code []byte, filename string, stdout, stderr io.Writer) (status int, err error) {
	if len(code) > MaxFrame-len(ParamCode)-1 {
		return 0, fmt.Errorf("sending %d bytes of code: %w", len(code), ErrProtocol)
	}
	err = c.sendRequest([][2][]byte{
		{[]byte(ParamOp), []byte(OpExec)},
		{[]byte(ParamFilename), []byte(filename)},
		{[]byte(ParamNamespace), []byte(namespace)},
		{[]byte(ParamCode), code},
	})
	if err != nil {
		return 0, err
	}
	_, done, err := c.ReadOutput(stdout, stderr)
	if err != nil {
		return 0, err
	}
	if !done {
		return 0, fmt.Errorf("running code: agent sent a prompt: %w", ErrProtocol)
	}
	return c.status, nil
}

// StartShell asks the agent for an interactive console. The namespace is
// a fresh one (__name__ "__pyglass__") unless mainNamespace, then it is
// __main__.__dict__. Follow with ReadOutput to get the first prompt.
func (c *Conn) StartShell(mainNamespace bool) error {
	return c.sendRequest([][2][]byte{
		{[]byte(ParamOp), []byte(OpShell)},
		{[]byte(ParamNamespace), []byte(namespaceParam(mainNamespace))},
	})
}

func namespaceParam(mainNamespace bool) string {
	if mainNamespace {
		return NamespaceMain
	}
	return NamespaceFresh
}

// ReadOutput copies the agent's output to stdout and stderr (nil
// discards) until the agent sends a prompt, returned with done false, or
// its exit status, then done is true and ExitStatus reports it. Returns
// ErrGone (wrapped) if the connection ends before either.
func (c *Conn) ReadOutput(stdout, stderr io.Writer) (prompt string, done bool, err error) {
	if c.done {
		return "", true, nil
	}
	for {
		typ, payload, err := ReadFrame(c.r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				return "", false, fmt.Errorf("reading agent output: %w", ErrGone)
			}
			return "", false, fmt.Errorf("reading agent output: %w", err)
		}
		switch typ {
		case FrameStdout, FrameStderr:
			w := stdout
			if typ == FrameStderr {
				w = stderr
			}
			if w != nil {
				if _, err := w.Write(payload); err != nil {
					return "", false, fmt.Errorf("copying agent output: %w", err)
				}
			}
		case FramePrompt:
			return string(payload), false, nil
		case FrameExit:
			st, err := strconv.Atoi(string(payload))
			if err != nil {
				return "", false, fmt.Errorf("parsing exit status %q: %w", payload, ErrProtocol)
			}
			c.status, c.done = st, true
			return "", true, nil
		default:
			return "", false, fmt.Errorf("reading agent output: unexpected frame %q: %w", typ, ErrProtocol)
		}
	}
}

// ExitStatus returns the status the agent reported, and whether it has.
func (c *Conn) ExitStatus() (int, bool) { return c.status, c.done }

// SendLine sends one line of shell input (without its newline).
func (c *Conn) SendLine(line string) error {
	if err := WriteFrame(c.c, FrameInput, []byte(line)); err != nil {
		return fmt.Errorf("sending shell input: %w", err)
	}
	return nil
}

// Interrupt discards the shell's pending multi-line block, as Ctrl-C does
// at the standard console's prompt; the agent answers with a new prompt.
// Code running in the target is interrupted with Break.
func (c *Conn) Interrupt() error {
	if err := WriteFrame(c.c, FrameInterrupt, nil); err != nil {
		return fmt.Errorf("sending shell interrupt: %w", err)
	}
	return nil
}

// Break asks the agent to raise KeyboardInterrupt in the code it is
// running, in the agent's thread only, as Ctrl-C does in python; the agent
// drops it when no code runs. Unlike the other methods it may be called
// while another goroutine is in Exec or ReadOutput.
func (c *Conn) Break() error {
	if err := WriteFrame(c.c, FrameBreak, nil); err != nil {
		return fmt.Errorf("sending the interrupt: %w", err)
	}
	return nil
}

// StartScript starts a shell session for piped input: it runs the lines
// sent with SendLine as python runs a script piped to it (no blank line
// needed after a block, expressions do not echo, the first exception ends
// it with status 1), each statement as soon as it is complete, in a fresh
// namespace whose __file__ is "<stdin>", or __main__'s if mainNamespace.
// The agent answers each line with a prompt (not meant to be shown), or
// with its exit status when the script ended; EndShell marks the end of
// the input.
func (c *Conn) StartScript(mainNamespace bool) error {
	return c.sendRequest([][2][]byte{
		{[]byte(ParamOp), []byte(OpShell)},
		{[]byte(ParamNamespace), []byte(namespaceParam(mainNamespace))},
		{[]byte(ParamMode), []byte(ModeScript)},
	})
}

// EndShell asks the agent to end the shell session, as Ctrl-D does; the
// agent answers with its exit status (read it with ReadOutput).
func (c *Conn) EndShell() error {
	if err := WriteFrame(c.c, FrameClose, nil); err != nil {
		return fmt.Errorf("ending the shell: %w", err)
	}
	return nil
}
