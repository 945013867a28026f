# pyglass in-target agent: the core (exec sessions and what every session
# needs). agent.py loads it into its own globals chunk by chunk (the chunks
# are separated by "# ---- chunk ----" lines, each is compiled on its own),
# then calls _main. Keep every chunk short: compiling it holds the GIL in
# one C call, stalling the target's other threads. shell.py adds the shell.
#
import sys
import os

PY3 = sys.version_info[0] >= 3
if PY3:
    import _thread as _threadmod
    import builtins as _builtins
    _text_type = str
    _int_types = (int,)
else:
    import thread as _threadmod
    import __builtin__ as _builtins
    _text_type = unicode  # noqa: F821 (2.7 only)
    _int_types = (int, long)  # noqa: F821 (2.7 only)
import _socket

_get_ident = _threadmod.get_ident

PROTOCOL = 1
HUB_NAME = '_pyglass_hub'
HUB_VERSION = 1

# Frame types (see protocol.go).
T_HELLO = ord('h')
T_STDOUT = ord('o')
T_STDERR = ord('e')
T_EXIT = ord('x')
T_PROMPT = ord('p')
T_PARAM = ord('q')
T_GO = ord('g')
T_INPUT = ord('i')
T_INTERRUPT = ord('k')
T_CLOSE = ord('c')

MAX_FRAME = 64 << 20
SEND_CHUNK = 1 << 20
FLUSH_AT = 64 << 10
MAX_PARAMS = 64
RECV_TIMEOUT = 1.0
SEND_TIMEOUT = 300.0

_timeout_error = getattr(_socket, 'timeout', None) or OSError


class _Gone(Exception):
    """The client went away (EOF, error, or the interpreter is finalizing)."""


def _finalizing():
    f = getattr(sys, 'is_finalizing', None)
    if f is None:
        return False
    try:
        return bool(f())
    except Exception:
        return False


def _to_bytes(s):
    if isinstance(s, bytes):
        return s
    if isinstance(s, _text_type):
        try:
            return s.encode('utf-8')
        except UnicodeError:
            pass
        if PY3:
            try:
                return s.encode('utf-8', 'surrogateescape')
            except UnicodeError:
                pass
        return s.encode('utf-8', 'backslashreplace')
    if isinstance(s, (bytearray, memoryview)):
        return bytes(s)
    raise TypeError('write() argument must be str, not %s' % type(s).__name__)


def _to_text(b):
    """Decodes protocol bytes to the native text type of 3.x, unicode on 2.7."""
    if PY3:
        return b.decode('utf-8', 'surrogateescape')
    return b.decode('utf-8', 'replace')


def _native_str(b):
    """bytes on 2.7 (the native str), text on 3.x."""
    if PY3:
        return b.decode('utf-8', 'surrogateescape')
    return b


def _frame(t, payload):
    n = len(payload)
    hdr = bytearray([t, (n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255])
    return bytes(hdr) + payload


# ---- chunk ----
class _Sender(object):
    """One connection to pyglass: framing and output buffering (the rest is
    in _Session, split off to keep each compiled chunk short)."""

    def __init__(self, sock):
        self.sock = sock
        self.pending = []  # [type, [chunks]] in order
        self.pending_len = 0
        self.broken = False
        self.ns = None
        self.underscore = None
        self.owns_underscore = False
        self.bin_out = _BinarySink(self, T_STDOUT)
        self.bin_err = _BinarySink(self, T_STDERR)

    # --- sending ---

    def _sendall(self, data):
        if self.broken:
            return
        sock = self.sock
        try:
            sock.settimeout(SEND_TIMEOUT)
            view = memoryview(data)
            sent = 0
            guard = 0
            while sent < len(data):
                try:
                    n = sock.send(view[sent:])
                except _timeout_error:
                    raise
                except (OSError, IOError, _socket.error) as e:
                    if e.args and e.args[0] == 4 and guard < 10000:  # EINTR
                        guard += 1
                        continue
                    raise
                if n <= 0:
                    raise _Gone()
                sent += n
        except BaseException:
            self.broken = True

    def send(self, t, payload):
        self.flush()
        self._sendall(_frame(t, payload))

    def write(self, t, s):
        """Queues output of type t; returns what a stream write returns."""
        b = _to_bytes(s)
        if b and not self.broken:
            p = self.pending
            if p and p[-1][0] == t:
                p[-1][1].append(b)
            else:
                p.append([t, [b]])
            self.pending_len += len(b)
            if self.pending_len >= FLUSH_AT or b'\n' in b:
                self.flush()
        if isinstance(s, memoryview):
            return s.nbytes if PY3 else len(b)
        return len(s)

    def flush(self):
        p = self.pending
        if not p:
            return
        self.pending = []
        self.pending_len = 0
        for t, chunks in p:
            data = b''.join(chunks)
            for i in range(0, len(data), SEND_CHUNK):
                self._sendall(_frame(t, data[i:i + SEND_CHUNK]))


# ---- chunk ----
class _Session(_Sender):
    """One connection to pyglass: display, exceptions, receiving."""

    def display(self, value):
        """sys.displayhook for this session: repr to stdout, bind _ in ns."""
        if value is None:
            return
        ns = self.ns
        bind = ns is not None and self._may_bind(ns)
        if bind:
            ns['_'] = None
        self.write(T_STDOUT, repr(value))
        self.write(T_STDOUT, '\n')
        if bind:
            ns['_'] = value
            self.underscore = value

    def _may_bind(self, ns):
        """In a shared namespace (__main__), _ is bound only if it was free
        or holds this session's last result, so that the target's own _
        (often gettext) is never clobbered."""
        if ns.get('__name__') == '__pyglass__':
            return True
        if '_' not in ns:
            self.owns_underscore = True
            return True
        return self.owns_underscore and ns['_'] is self.underscore

    def release_underscore(self):
        """Removes _ from a shared namespace if this session put it there."""
        ns = self.ns
        if ns is not None and self.owns_underscore and ns.get('_', ns) is self.underscore:
            del ns['_']
        self.underscore = None

    def write_exception(self, et, ev, tb):
        """Writes the exception as Python prints it, on stderr."""
        text = None
        try:
            import traceback
            text = ''.join(traceback.format_exception(et, ev, tb))
        except BaseException:
            try:
                text = '%s: %s\n' % (getattr(et, '__name__', et), ev)
            except BaseException:
                text = 'exception\n'
        self.write(T_STDERR, text)
        self.flush()

    # --- receiving ---

    def _recv_exact(self, n):
        sock = self.sock
        chunks = []
        got = 0
        eintr = 0
        while got < n:
            try:
                sock.settimeout(RECV_TIMEOUT)
                c = sock.recv(min(n - got, SEND_CHUNK))
            except _timeout_error:
                if _finalizing():
                    raise _Gone()
                continue
            except (OSError, IOError, _socket.error) as e:
                if e.args and e.args[0] == 4 and eintr < 10000:  # EINTR on 2.7
                    eintr += 1
                    continue
                raise _Gone()
            if not c:
                raise _Gone()
            chunks.append(c)
            got += len(c)
        return b''.join(chunks)

    def recv(self):
        """Returns (type, payload); raises _Gone when the client vanished."""
        hdr = bytearray(self._recv_exact(5))
        n = (hdr[1] << 24) | (hdr[2] << 16) | (hdr[3] << 8) | hdr[4]
        if n > MAX_FRAME:
            raise _Gone()
        payload = self._recv_exact(n) if n else b''
        return hdr[0], payload


class _BinarySink(object):
    """sys.stdout.buffer / sys.stderr.buffer as seen by a session thread."""

    def __init__(self, sess, t):
        self._sess = sess
        self._t = t

    def write(self, b):
        if isinstance(b, _text_type):
            raise TypeError("a bytes-like object is required, not 'str'")
        return self._sess.write(self._t, b)

    def writelines(self, lines):
        for b in lines:
            self.write(b)

    def flush(self):
        self._sess.flush()

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    @property
    def closed(self):
        return False

    def fileno(self):
        raise _unsupported('fileno')


def _unsupported(what):
    io = sys.modules.get('io')
    cls = getattr(io, 'UnsupportedOperation', None) or IOError
    return cls('%s is not available in a pyglass session' % what)


# ---- chunk ----
class _OutRouter(object):
    """Replaces sys.stdout or sys.stderr while sessions are active.

    Writes from a session's thread go to that session; all other threads
    reach the original stream. Unknown attributes are delegated to it.
    """

    def __init__(self, hub, t, orig):
        d = self.__dict__
        d['_pg_hub'] = hub
        d['_pg_t'] = t
        d['_pg_orig'] = orig
        d['_pg_soft'] = {}

    def _pg_sess(self):
        return self.__dict__['_pg_hub'].sessions.get(_get_ident())

    def write(self, s):
        sess = self._pg_sess()
        if sess is not None:
            return sess.write(self.__dict__['_pg_t'], s)
        orig = self.__dict__['_pg_orig']
        if orig is None:  # print() to a None stream is a no-op
            return len(s)
        return orig.write(s)

    def writelines(self, lines):
        sess = self._pg_sess()
        if sess is None:
            orig = self.__dict__['_pg_orig']
            if orig is not None:
                return orig.writelines(lines)
            return None
        for s in lines:
            sess.write(self.__dict__['_pg_t'], s)

    def flush(self):
        sess = self._pg_sess()
        if sess is not None:
            return sess.flush()
        orig = self.__dict__['_pg_orig']
        if orig is not None:
            return orig.flush()

    def isatty(self):
        if self._pg_sess() is not None:
            return False
        return self.__dict__['_pg_orig'].isatty()

    def fileno(self):
        if self._pg_sess() is not None:
            raise _unsupported('fileno')
        return self.__dict__['_pg_orig'].fileno()

    def close(self):
        if self._pg_sess() is not None:
            return None
        return self.__dict__['_pg_orig'].close()

    @property
    def buffer(self):
        sess = self._pg_sess()
        if sess is not None:
            if self.__dict__['_pg_t'] == T_STDOUT:
                return sess.bin_out
            return sess.bin_err
        return self.__dict__['_pg_orig'].buffer

    @property
    def encoding(self):
        if self._pg_sess() is not None:
            return 'utf-8'
        return self.__dict__['_pg_orig'].encoding

    @property
    def errors(self):
        if self._pg_sess() is not None:
            return 'strict'
        return self.__dict__['_pg_orig'].errors

    @property
    def closed(self):
        if self._pg_sess() is not None:
            return False
        return self.__dict__['_pg_orig'].closed

    # Python 2 print statement state, kept per thread.
    def _get_soft(self):
        return self.__dict__['_pg_soft'].get(_get_ident(), 0)

    def _set_soft(self, v):
        self.__dict__['_pg_soft'][_get_ident()] = v

    softspace = property(_get_soft, _set_soft)

    def __getattr__(self, name):
        return getattr(self.__dict__['_pg_orig'], name)

    def __setattr__(self, name, value):
        if name == 'softspace':
            object.__setattr__(self, name, value)
        else:
            setattr(self.__dict__['_pg_orig'], name, value)

    def __repr__(self):
        return '<pyglass router for %r>' % (self.__dict__['_pg_orig'],)


# ---- chunk ----
class _InRouter(object):
    """Replaces sys.stdin: session threads see an empty stream that cannot
    be closed (site's exit() closes sys.stdin), other threads the original."""

    def __init__(self, hub, orig):
        self.__dict__['_pg_hub'] = hub
        self.__dict__['_pg_orig'] = orig

    def _pg_sess(self):
        return self.__dict__['_pg_hub'].sessions.get(_get_ident())

    def read(self, *args):
        if self._pg_sess() is not None:
            return ''
        return self.__dict__['_pg_orig'].read(*args)

    def readline(self, *args):
        if self._pg_sess() is not None:
            return ''
        return self.__dict__['_pg_orig'].readline(*args)

    def readlines(self, *args):
        if self._pg_sess() is not None:
            return []
        return self.__dict__['_pg_orig'].readlines(*args)

    def __iter__(self):
        if self._pg_sess() is not None:
            return iter(())
        return iter(self.__dict__['_pg_orig'])

    def close(self):
        if self._pg_sess() is not None:
            return None
        return self.__dict__['_pg_orig'].close()

    def isatty(self):
        if self._pg_sess() is not None:
            return False
        return self.__dict__['_pg_orig'].isatty()

    def fileno(self):
        if self._pg_sess() is not None:
            raise _unsupported('fileno')
        return self.__dict__['_pg_orig'].fileno()

    @property
    def closed(self):
        if self._pg_sess() is not None:
            return False
        return self.__dict__['_pg_orig'].closed

    def __getattr__(self, name):
        return getattr(self.__dict__['_pg_orig'], name)

    def __setattr__(self, name, value):
        setattr(self.__dict__['_pg_orig'], name, value)

    def __repr__(self):
        return '<pyglass router for %r>' % (self.__dict__['_pg_orig'],)


# ---- chunk ----
class _Hub(object):
    """State shared by all concurrent agent sessions, found as sys._pyglass_hub.

    Sessions of other copies of this file use it too, so its interface
    (pg_version, lock, dead, sessions {ident: session}) must stay stable;
    pg_version changes when it does not.
    """

    pg_version = HUB_VERSION

    def __init__(self):
        self.lock = _threadmod.allocate_lock()
        self.dead = False
        self.sessions = {}
        self.routers = None

    def displayhook(self, value):
        sess = self.sessions.get(_get_ident())
        if sess is not None:
            return sess.display(value)
        return self.orig_displayhook(value)

    def install(self):
        self.out = _OutRouter(self, T_STDOUT, sys.stdout)
        self.err = _OutRouter(self, T_STDERR, sys.stderr)
        # A None stdin (daemons, pythonw) stays None: code tests for it.
        self.inp = _InRouter(self, sys.stdin) if sys.stdin is not None else None
        self.orig_displayhook = sys.displayhook
        self.dh = self.displayhook  # one bound method, compared with 'is'
        sys.stdout = self.out
        sys.stderr = self.err
        if self.inp is not None:
            sys.stdin = self.inp
        sys.displayhook = self.dh

    def uninstall(self):
        if sys.stdout is self.out:
            sys.stdout = self.out.__dict__['_pg_orig']
        if sys.stderr is self.err:
            sys.stderr = self.err.__dict__['_pg_orig']
        if self.inp is not None and sys.stdin is self.inp:
            sys.stdin = self.inp.__dict__['_pg_orig']
        if sys.displayhook is self.dh:
            sys.displayhook = self.orig_displayhook


def _hub_join(sess):
    """Registers sess for the current thread; returns the hub or None."""
    ident = _get_ident()
    for _ in range(1000):
        hub = sys.__dict__.setdefault(HUB_NAME, _Hub())  # atomic under the GIL
        if getattr(hub, 'pg_version', None) != HUB_VERSION:
            return None
        hub.lock.acquire()
        try:
            if hub.dead:
                continue
            if not hub.sessions:
                hub.install()
            hub.sessions[ident] = sess
            return hub
        finally:
            hub.lock.release()
    return None


def _hub_leave(hub):
    ident = _get_ident()
    hub.lock.acquire()
    try:
        hub.sessions.pop(ident, None)
        if not hub.sessions:
            hub.uninstall()
            hub.dead = True
            if sys.__dict__.get(HUB_NAME) is hub:
                del sys.__dict__[HUB_NAME]
    finally:
        hub.lock.release()


# ---- chunk ----
# --- compiling and running ---

def _compile_exec(src, filename):
    """Compiles a whole program (bytes) like python does for -c or a file."""
    if not PY3:
        head = b'\n'.join(src.split(b'\n', 2)[:2])
        if b'coding' not in head:
            try:
                src = src.decode('utf-8')
            except UnicodeError:
                pass
    return compile(src, filename, 'exec', 0, True)


def _run_code(sess, co, ns):
    """Runs co in ns; returns (status, exited)."""
    try:
        exec(co, ns)
    except SystemExit:
        e = sys.exc_info()[1]
        return _exit_status(sess, e), True
    except BaseException:
        et, ev, tb = sys.exc_info()
        try:
            sess.write_exception(et, ev, tb.tb_next if tb is not None else None)
        finally:
            et = ev = tb = None
        return 1, False
    finally:
        if not PY3:
            sys.exc_clear()
    return 0, False


def _exit_status(sess, e):
    """Maps SystemExit to a status like the interpreter does at exit."""
    code = getattr(e, 'code', None)
    if code is None:
        return 0
    if isinstance(code, _int_types):
        return int(code)
    try:
        sess.write(T_STDERR, '%s\n' % (code,))
    except BaseException:
        pass
    return 1


def _op_exec(sess, params):
    src = params.get('code', b'')
    filename = _native_str(params.get('filename', b'<string>'))
    ns = {'__name__': '__pyglass__', '__builtins__': _builtins}
    try:
        co = _compile_exec(src, filename)
    except BaseException:
        et, ev = sys.exc_info()[:2]
        sess.write_exception(et, ev, None)
        return 1
    linecache = None
    saved = None
    if not filename.startswith('<'):
        # Tracebacks show the script's lines even if the file is not visible
        # in the target's mount namespace.
        try:
            import linecache
            saved = linecache.cache.get(filename)
            lines = _to_text(src).splitlines(True) if PY3 else src.splitlines(True)
            linecache.cache[filename] = (len(src), None, lines, filename)
        except BaseException:
            linecache = None
    try:
        status, _ = _run_code(sess, co, ns)
    finally:
        if linecache is not None:
            try:
                if saved is None:
                    linecache.cache.pop(filename, None)
                else:
                    linecache.cache[filename] = saved
            except BaseException:
                pass
        ns.clear()
    return status


# ---- chunk ----
def _op_shell_loaded(sess, params):
    """Loads shell.py (only shell sessions pay for compiling it), then
    serves the shell."""
    try:
        _load('shell.py')  # noqa: F821 (agent.py)
    except BaseException:
        sess.write(T_STDERR, 'pyglass: cannot load the shell part of the agent\n')
        return 2
    return _op_shell(sess, params)  # noqa: F821 (shell.py)


def _hello():
    tid = 0
    try:
        f = getattr(_threadmod, 'get_native_id', None)
        if f is not None:
            tid = f()
        else:
            tid = int(os.readlink('/proc/thread-self').split('/')[-1])
    except BaseException:
        tid = 0
    exe = sys.executable or ''
    if not isinstance(exe, bytes):
        exe = _to_bytes(exe)
    lines = [
        b'protocol=' + str(PROTOCOL).encode('ascii'),
        b'pid=' + str(os.getpid()).encode('ascii'),
        b'tid=' + str(tid).encode('ascii'),
        b'ident=' + str(_get_ident()).encode('ascii'),
        b'version=' + ('%d.%d.%d' % tuple(sys.version_info[:3])).encode('ascii'),
        b'hexversion=' + str(sys.hexversion).encode('ascii'),
        b'executable=' + exe.replace(b'\n', b' '),
    ]
    return b'\n'.join(lines)


def _read_request(sess):
    params = {}
    for _ in range(MAX_PARAMS):
        t, payload = sess.recv()
        if t == T_GO:
            return params
        if t == T_CLOSE:
            return None
        if t == T_PARAM:
            k, _, v = payload.partition(b'=')
            params[_native_str(k)] = v
    return None


def _connect(path):
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if not PY3:
            try:
                import fcntl
                fcntl.fcntl(sock.fileno(), fcntl.F_SETFD,
                            fcntl.fcntl(sock.fileno(), fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
            except BaseException:
                pass
        sock.settimeout(10.0)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _main(d):
    try:
        sock = _connect(os.path.join(d, 's'))
    except BaseException:
        _remove_dir(d)
        return
    sess = _Session(sock)
    hub = None
    status = None
    try:
        try:
            sess.send(T_HELLO, _hello())
            params = _read_request(sess)
            if params is None:
                return
            op = params.get('op', b'')
            if op in (b'exec', b'shell'):
                hub = _hub_join(sess)
                if hub is None:
                    sess.write(T_STDERR, 'pyglass: another agent version is active in this process\n')
                    status = 2
                elif op == b'exec':
                    status = _op_exec(sess, params)
                else:
                    status = _op_shell_loaded(sess, params)
            else:
                sess.write(T_STDERR, 'pyglass: unknown operation %r\n' % (op,))
                status = 2
        except _Gone:
            status = None
    finally:
        try:
            sess.flush()
        except BaseException:
            pass
        if hub is not None:
            try:
                _hub_leave(hub)
            except BaseException:
                pass
        _remove_dir(d)
        if status is not None:
            try:
                sess.send(T_EXIT, str(status).encode('ascii'))
            except BaseException:
                pass
        try:
            sock.close()
        except BaseException:
            pass
        if not PY3:
            sys.exc_clear()
