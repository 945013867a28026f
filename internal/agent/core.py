# pyglass in-target agent: the core (exec sessions and what every session
# needs). agent.py loads it into its own globals chunk by chunk (the chunks
# are separated by "# ---- chunk ----" lines, each is compiled on its own),
# then calls _main. Keep every chunk short: compiling it holds the GIL in
# one C call, stalling the target's other threads. shell.py adds the shell.
#
# Leaving nothing behind. When a session ends, agent.py deletes every name
# of these globals but __builtins__, and no object the agent made may
# survive that, not even as cyclic garbage awaiting the target's collector
# (leak reports would show it). Hence:
# - No class statements: a class always refers to itself (its __mro__), so
#   every class made per session would be cyclic garbage. A session is a
#   dict handled by plain functions; the routers are instances of the
#   standard library's codecs.StreamWriter/StreamReader (whose __getattr__
#   forwards unknown attributes to .stream) with closures in their
#   __dict__.
# - The hub and the routers run in any thread of the target, possibly after
#   the session that made them ended and its globals were emptied (another
#   session may still be active, or the target kept a router): they use
#   closure variables and builtins only, never a global of this file, and
#   pass through to the original stream when no session is active.
# - Teardown breaks what cycles remain: the session dict is cleared, the
#   socket closed, exceptions and tracebacks held in locals are dropped.
#
import sys
import os
import codecs

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

_get_ident = _original(_threadmod.__name__, 'get_ident')  # noqa: F821 (agent.py)

PROTOCOL = 1
HUB_NAME = '_pyglass_hub'
HUB_VERSION = 2  # 1 was an instance of a class, 2 is a dict

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
T_BREAK = ord('b')

MAX_FRAME = 64 << 20
SEND_CHUNK = 1 << 20
FLUSH_AT = 64 << 10
MAX_PARAMS = 64
RECV_TIMEOUT = 1.0
SEND_TIMEOUT = 300.0

_timeout_error = getattr(_socket, 'timeout', None) or OSError

# Raised when the client went away (EOF, error, or the interpreter is
# finalizing). A built-in class (see above); the user's code never raises
# into the places that catch it (_run_code catches everything).
_Gone = EOFError


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
# --- a session: one connection to pyglass ---
#
# A session is a dict: sock, pending ([type, [chunks]] in order),
# pending_len, broken, ns (the shell's namespace), underscore,
# owns_underscore, and write, flush, display: this file's functions, which
# the routers call as sess['write'](sess, t, s) (the routers may come from
# another session's copy of this file, whose globals may be gone).

def _new_session(sock):
    return {
        'sock': sock, 'pending': [], 'pending_len': 0, 'broken': False,
        'ns': None, 'underscore': None, 'owns_underscore': False,
        'write': _write, 'flush': _flush, 'display': _display,
    }


def _sendall(sess, data):
    """Sends data in one C call, so that a KeyboardInterrupt raised in this
    thread by an interrupt (see _reader_start) comes before or after whole
    frames, never inside one; it goes on to the code that printed."""
    if sess['broken']:
        return
    sock = sess['sock']
    try:
        sock.settimeout(SEND_TIMEOUT)
        sock.sendall(data)
    except KeyboardInterrupt:
        raise
    except BaseException:
        sess['broken'] = True


def _send(sess, t, payload):
    _flush(sess)
    _sendall(sess, _frame(t, payload))


def _write(sess, t, s):
    """Queues output of type t; returns what a stream write returns."""
    b = _to_bytes(s)
    if b and not sess['broken']:
        p = sess['pending']
        if p and p[-1][0] == t:
            p[-1][1].append(b)
        else:
            p.append([t, [b]])
        sess['pending_len'] += len(b)
        if sess['pending_len'] >= FLUSH_AT or b'\n' in b:
            _flush(sess)
    if isinstance(s, memoryview):
        return s.nbytes if PY3 else len(b)
    return len(s)


def _flush(sess):
    p = sess.get('pending')
    if not p:
        return
    sess['pending'] = []
    sess['pending_len'] = 0
    frames = []
    for t, chunks in p:
        data = b''.join(chunks)
        for i in range(0, len(data), SEND_CHUNK):
            frames.append(_frame(t, data[i:i + SEND_CHUNK]))
    _sendall(sess, b''.join(frames))


# ---- chunk ----
def _display(sess, value):
    """sys.displayhook for this session: repr to stdout, bind _ in ns."""
    if value is None:
        return
    ns = sess['ns']
    bind = ns is not None and _may_bind(sess, ns)
    if bind:
        ns['_'] = None
    _write(sess, T_STDOUT, repr(value))
    _write(sess, T_STDOUT, '\n')
    if bind:
        ns['_'] = value
        sess['underscore'] = value


def _may_bind(sess, ns):
    """In a shared namespace (__main__), _ is bound only if it was free or
    holds this session's last result, so that the target's own _ (often
    gettext) is never clobbered."""
    if ns.get('__name__') == '__pyglass__':
        return True
    if '_' not in ns:
        sess['owns_underscore'] = True
        return True
    return sess['owns_underscore'] and ns['_'] is sess['underscore']


def _release_underscore(sess):
    """Removes _ from a shared namespace if this session put it there."""
    ns = sess['ns']
    if ns is not None and sess['owns_underscore'] and ns.get('_', ns) is sess['underscore']:
        del ns['_']
    sess['underscore'] = None


def _write_exception(sess, et, ev, tb):
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
    _write(sess, T_STDERR, text)
    _flush(sess)


def _recv_exact(sess, n):
    sock = sess['sock']
    chunks = []
    got = 0
    eintr = 0
    while got < n:
        try:
            sock.settimeout(RECV_TIMEOUT)
            c = sock.recv(min(n - got, SEND_CHUNK))
        except _timeout_error:
            if _finalizing() or sess.get('halt'):
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


def _recv(sess):
    """Returns (type, payload); raises _Gone when the client vanished."""
    hdr = bytearray(_recv_exact(sess, 5))
    n = (hdr[1] << 24) | (hdr[2] << 16) | (hdr[3] << 8) | hdr[4]
    if n > MAX_FRAME:
        raise _Gone()
    payload = _recv_exact(sess, n) if n else b''
    return hdr[0], payload


# ---- chunk ----
# --- routers: everything below up to _hub_join runs in any thread of the
# target and must use closure variables and builtins only (see the top) ---

def _instance(cls, stream, attrs):
    """A codecs.StreamWriter or StreamReader whose __dict__ is attrs plus
    stream: attrs' functions are called unbound, other names are looked up
    on stream by the class's __getattr__."""
    o = cls(stream)
    d = o.__dict__
    d.clear()
    d.update(attrs)
    d['stream'] = stream
    return o


def _dynamic(orig, sessions, values):
    """Where attribute lookups end for a router: on 3.7+, a module object
    whose __getattr__ (PEP 562) gives values[name] in a session's thread
    and orig's attribute otherwise; earlier, orig itself."""
    if sys.version_info < (3, 7) or orig is None:
        return orig
    get = sessions.get
    ident = _get_ident

    def lookup(name):
        if name in values and get(ident()) is not None:
            return values[name]
        return getattr(orig, name)
    m = type(sys)('pyglass_router')
    m.__getattr__ = lookup
    return m


def _unsupported_class():
    io = sys.modules.get('io')
    return getattr(io, 'UnsupportedOperation', None) or IOError


def _make_out(sessions, t, orig, busy, seq):
    """The router that replaces sys.stdout or sys.stderr: writes from a
    session's thread go to that session, all other threads reach orig.
    write, writelines and flush count themselves in busy (the calling
    thread's ident, one item per call in progress; an interrupted session
    thread removes what it left there, see _run_end) and seq (calls
    ended), see _linger."""
    get = sessions.get
    ident = _get_ident
    unsupported = _unsupported_class()

    def write(s):
        me = ident()
        busy.append(me)
        try:
            sess = get(me)
            if sess is not None:
                return sess['write'](sess, t, s)
            if orig is None:  # print() to a None stream is a no-op
                return len(s)
            return orig.write(s)
        finally:
            try:
                busy.remove(me)
            except ValueError:
                pass
            seq[0] += 1

    def writelines(lines):
        me = ident()
        busy.append(me)
        try:
            sess = get(me)
            if sess is None:
                if orig is not None:
                    return orig.writelines(lines)
                return None
            w = sess['write']
            for s in lines:
                w(sess, t, s)
        finally:
            try:
                busy.remove(me)
            except ValueError:
                pass
            seq[0] += 1

    def flush():
        me = ident()
        busy.append(me)
        try:
            sess = get(me)
            if sess is not None:
                return sess['flush'](sess)
            if orig is not None:
                return orig.flush()
        finally:
            try:
                busy.remove(me)
            except ValueError:
                pass
            seq[0] += 1

    def isatty():
        if get(ident()) is not None:
            return False
        return orig.isatty()

    def fileno():
        if get(ident()) is not None:
            raise unsupported('fileno is not available in a pyglass session')
        return orig.fileno()

    def close():
        if get(ident()) is not None:
            return None
        return orig.close()

    attrs = {'write': write, 'writelines': writelines, 'flush': flush,
             'isatty': isatty, 'fileno': fileno, 'close': close}
    if not PY3:
        attrs['softspace'] = 0  # the print statement's state
    elif getattr(orig, 'buffer', None) is not None:
        attrs['buffer'] = _make_binary(sessions, t, orig.buffer, busy, seq)
    values = {'encoding': 'utf-8', 'errors': 'strict', 'closed': False}
    return _instance(codecs.StreamWriter, _dynamic(orig, sessions, values), attrs)


# ---- chunk ----
def _make_binary(sessions, t, orig, busy, seq):
    """The router that stands for sys.stdout.buffer (3.x)."""
    get = sessions.get
    ident = _get_ident
    unsupported = _unsupported_class()
    text_type = _text_type

    def write(b):
        me = ident()
        busy.append(me)
        try:
            sess = get(me)
            if sess is None:
                return orig.write(b)
            if isinstance(b, text_type):
                raise TypeError("a bytes-like object is required, not 'str'")
            return sess['write'](sess, t, b)
        finally:
            try:
                busy.remove(me)
            except ValueError:
                pass
            seq[0] += 1

    def writelines(lines):
        sess = get(ident())
        if sess is None:
            return orig.writelines(lines)
        for b in lines:
            write(b)

    def flush():
        me = ident()
        busy.append(me)
        try:
            sess = get(me)
            if sess is not None:
                return sess['flush'](sess)
            return orig.flush()
        finally:
            try:
                busy.remove(me)
            except ValueError:
                pass
            seq[0] += 1

    def isatty():
        if get(ident()) is not None:
            return False
        return orig.isatty()

    def fileno():
        if get(ident()) is not None:
            raise unsupported('fileno is not available in a pyglass session')
        return orig.fileno()

    attrs = {'write': write, 'writelines': writelines, 'flush': flush,
             'isatty': isatty, 'fileno': fileno}
    return _instance(codecs.StreamWriter, _dynamic(orig, sessions, {'closed': False}), attrs)


def _make_in(sessions, orig):
    """The router that replaces sys.stdin: session threads see an empty
    stream that cannot be closed (site's exit() closes sys.stdin), other
    threads the original. Iteration goes through readline (the class's
    __next__)."""
    get = sessions.get
    ident = _get_ident
    unsupported = _unsupported_class()

    def read(*args):
        if get(ident()) is not None:
            return ''
        return orig.read(*args)

    def readline(*args):
        if get(ident()) is not None:
            return ''
        return orig.readline(*args)

    def readlines(*args):
        if get(ident()) is not None:
            return []
        return orig.readlines(*args)

    def close():
        if get(ident()) is not None:
            return None
        return orig.close()

    def isatty():
        if get(ident()) is not None:
            return False
        return orig.isatty()

    def fileno():
        if get(ident()) is not None:
            raise unsupported('fileno is not available in a pyglass session')
        return orig.fileno()

    attrs = {'read': read, 'readline': readline, 'readlines': readlines,
             'close': close, 'isatty': isatty, 'fileno': fileno}
    return _instance(codecs.StreamReader, _dynamic(orig, sessions, {'closed': False}), attrs)


def _make_displayhook(sessions, orig):
    get = sessions.get
    ident = _get_ident

    def displayhook(value):
        sess = get(ident())
        if sess is not None:
            return sess['display'](sess, value)
        return orig(value)
    return displayhook


# ---- chunk ----
# --- the hub: state shared by all concurrent sessions, sys._pyglass_hub ---
#
# A dict: pg (HUB_VERSION), lock, dead, sessions {ident: session}, busy
# and seq (router activity, see _make_out), and once installed: out, err,
# inp, dh (the routers) and orig (the four objects they replaced). A
# session is a dict whose write, flush and display are called as
# sess['write'](sess, t, s), sess['flush'](sess), sess['display'](sess,
# value). Sessions of other copies of this file use it too, so this layout
# must stay stable; HUB_VERSION changes when it does not.

def _new_hub():
    return {'pg': HUB_VERSION, 'lock': _allocate_lock(),  # noqa: F821 (agent.py)
            'dead': False, 'sessions': {}, 'busy': [], 'seq': [0],
            'pid': os.getpid(), 'child': _make_in_child(sys.__dict__, HUB_NAME, FORK_NAME)}


def _hub_install(hub):
    sessions = hub['sessions']
    busy, seq = hub['busy'], hub['seq']
    hub['orig'] = (sys.stdout, sys.stderr, sys.stdin, sys.displayhook)
    hub['out'] = _make_out(sessions, T_STDOUT, sys.stdout, busy, seq)
    hub['err'] = _make_out(sessions, T_STDERR, sys.stderr, busy, seq)
    # A None stdin (daemons, pythonw) stays None: code tests for it.
    hub['inp'] = _make_in(sessions, sys.stdin) if sys.stdin is not None else None
    hub['dh'] = _make_displayhook(sessions, sys.displayhook)
    sys.stdout = hub['out']
    sys.stderr = hub['err']
    if hub['inp'] is not None:
        sys.stdin = hub['inp']
    sys.displayhook = hub['dh']


def _hub_uninstall(hub):
    out, err, inp, dh = hub['orig']
    if sys.stdout is hub['out']:
        sys.stdout = out
    if sys.stderr is hub['err']:
        sys.stderr = err
    if hub['inp'] is not None and sys.stdin is hub['inp']:
        sys.stdin = inp
    if sys.displayhook is hub['dh']:
        sys.displayhook = dh


def _hub_join(sess):
    """Registers sess for the current thread; returns the hub or None."""
    ident = _get_ident()
    pid = os.getpid()
    for _ in range(1000):
        hub = sys.__dict__.setdefault(HUB_NAME, _new_hub())  # atomic under the GIL
        if type(hub) is not dict or hub.get('pg') != HUB_VERSION:
            return None
        if hub.get('pid', pid) != pid:
            # Inherited through a fork that ran no fork handler (before
            # 3.7, or a C fork such as uwsgi's): clean up now.
            if hasattr(os, 'register_at_fork'):
                _mark_stale_threads()
            hub['child'](hub)
            continue
        hub['lock'].acquire()
        try:
            if hub['dead']:
                continue
            if not hub['sessions']:
                _hub_install(hub)
            hub['sessions'][ident] = sess
            return hub
        finally:
            hub['lock'].release()
    return None


# A process forked in C without Python's after-fork code (a uwsgi worker
# without py-call-osafterfork) still lists the parent's other threads in
# its interpreter. From 3.11 on their states point into C stacks that
# this process reuses for new threads, so sys._current_frames() reads
# garbage and crashes it. Once such a fork is seen (a hub of another
# process with no fork handler run, from 3.7 on where one would have run
# after a Python fork; or a thread object whose OS thread is not there),
# sys records it for good and no pyglass code calls _current_frames().
STALE_NAME = '_pyglass_stale_threads'


def _mark_stale_threads():
    sys.__dict__[STALE_NAME] = True


def _frames_safe():
    """Whether sys._current_frames() can be called in this process."""
    d = sys.__dict__
    if d.get(STALE_NAME):
        return False
    th = sys.modules.get('threading')
    active = getattr(th, '_active', None)
    dummy = getattr(th, '_DummyThread', None)
    if type(active) is not dict:
        return True
    try:
        live = set(int(x) for x in os.listdir('/proc/self/task'))
    except BaseException:
        return True  # no /proc of this process's namespace: cannot tell
    for t in list(active.values()):
        if dummy is not None and isinstance(t, dummy):
            continue  # a foreign thread's stays after it ends
        nid = getattr(t, '_native_id', None)  # 3.8+
        if type(nid) is int and nid > 0 and nid not in live:
            _mark_stale_threads()
            return False
    return True


def _hub_leave(hub):
    """Unregisters the current thread; returns True if it was the last
    session, which put the original objects back."""
    ident = _get_ident()
    hub['lock'].acquire()
    try:
        hub['sessions'].pop(ident, None)
        if hub['sessions']:
            return False
        _hub_uninstall(hub)
        hub['dead'] = True
        if sys.__dict__.get(HUB_NAME) is hub:
            del sys.__dict__[HUB_NAME]
        return True
    finally:
        hub['lock'].release()


# ---- chunk ----
# --- a fork while a session is active ---
#
# A child forked meanwhile (gunicorn's master spawning a worker) would keep
# the sessions' sockets and the routers for its whole life. The first
# session of a process registers, with os.register_at_fork (3.7+), one
# handler for good (a registration cannot be undone), kept in
# sys._pyglass_atfork so that no later session registers another: in the
# child it closes the sockets in its list 'socks' (every session's, from
# its connection until it is closed, so also while the session ends after
# leaving the hub) and calls the active hub's 'child' function, which puts
# back the original streams and removes the hub. They use closure
# variables only (they run after this file's globals are emptied). Before
# 3.7, or when the fork ran no handler (uwsgi forks its workers in C and
# runs them only with py-call-osafterfork), the child keeps them until a
# session starts in it: the hub records its pid, and a session that finds
# a hub of another process runs its 'child' function first.

FORK_NAME = '_pyglass_atfork'


def _register_at_fork():
    register = getattr(os, 'register_at_fork', None)
    d = sys.__dict__
    if register is None or FORK_NAME in d:
        return
    handler = _make_fork_handler(d, HUB_NAME)
    if d.setdefault(FORK_NAME, handler) is not handler:
        return  # another session registered one meanwhile
    try:
        register(after_in_child=handler)
    except BaseException:
        d.pop(FORK_NAME, None)


def _make_fork_handler(d, hub_name):
    socks = []

    def after_in_child():
        for s in list(socks):
            try:
                s.close()
            except BaseException:
                pass
        del socks[:]
        hub = d.get(hub_name)
        f = hub.get('child') if type(hub) is dict else None
        if f is not None:
            f(hub)
    after_in_child.socks = socks
    return after_in_child


def _fork_track(sock):
    """Puts sock in the fork handler's list (registering the handler)."""
    try:
        _register_at_fork()
        socks = getattr(sys.__dict__.get(FORK_NAME), 'socks', None)
        if type(socks) is list:
            socks.append(sock)
    except BaseException:
        pass


def _fork_closer(sock):
    """A function (closure variables only) that closes sock and then takes
    it out of the fork handler's list: a child forked in between closes
    it again, which does nothing."""
    socks = getattr(sys.__dict__.get(FORK_NAME), 'socks', None)

    def close():
        try:
            sock.close()
        except BaseException:
            pass
        if type(socks) is list:
            try:
                socks.remove(sock)
            except BaseException:
                pass
    return close


def _make_in_child(d, hub_name, fork_name):
    """The hub's clean-up in a forked child, where no session's thread
    exists (the hub's lock may be held by a thread that is not there: it
    is not taken). Run by the fork handler, or by the next session in
    that child if no handler ran."""
    def in_child(hub):
        if d.get(hub_name) is hub:
            del d[hub_name]
        hub['dead'] = True
        sessions = hub['sessions']
        socks = getattr(d.get(fork_name), 'socks', None)
        for sess in list(sessions.values()):
            sess['broken'] = True
            box = sess.get('reader')
            # The session's socket, and its reader's (a dup).
            for sk in (sess.get('sock'), type(box) is dict and box.get('sock') or None):
                if sk is None:
                    continue
                try:
                    sk.close()
                    if type(socks) is list and sk in socks:
                        socks.remove(sk)
                except BaseException:
                    pass
        sessions.clear()
        orig = hub.get('orig')
        if orig is None:
            return
        for i, name in enumerate(('stdout', 'stderr', 'stdin', 'displayhook')):
            router = hub.get(('out', 'err', 'inp', 'dh')[i])
            if router is not None and d.get(name) is router:
                d[name] = orig[i]
    return in_child


# ---- chunk ----
LINGER_STEP = 0.002
LINGER_QUIET = 2  # polls
LINGER_SHORT = 0.02
LINGER_MAX = 10.0
KEEP_NAME = '_pyglass_kept'


def _router_codes(hub):
    """The ids of the code objects of the routers' write, writelines and
    flush (the routers are alive, so the ids stay theirs)."""
    codes = []
    for r in (hub['out'], hub['err']):
        for o in (r, r.__dict__.get('buffer')):
            if o is None:
                continue
            for name in ('write', 'writelines', 'flush'):
                f = o.__dict__.get(name)
                if f is not None:
                    codes.append(id(f.__code__))
    return codes


def _in_router(codes):
    """Whether another thread is inside a router's write or flush (or
    about to run its first line); None when frames cannot be read."""
    if not _frames_safe():
        return None
    frames = sys._current_frames()
    f = None
    try:
        for f in frames.values():
            if id(f.f_code) in codes:
                return True
        return False
    finally:
        f = None
        frames.clear()


def _linger(hub, limit):
    """Keeps the uninstalled routers alive until no thread can still be
    inside a print to them; returns True when that is so, False after
    limit seconds.

    print() and the interpreter's own writers hold a borrowed reference to
    sys.stdout or sys.stderr while they call its write several times,
    letting other threads run in between. Freeing a router there (it is
    not cyclic, so it goes as soon as nothing refers to it) would make
    that print use freed memory: the target could crash. So this thread
    pauses without the GIL, letting such prints go on, until LINGER_QUIET
    pauses in a row saw no router call in progress or ended and no thread
    in a router's code."""
    if PY3:
        lock = _allocate_lock()  # noqa: F821 (agent.py)
        lock.acquire()

        def sleep(t):
            lock.acquire(True, t)
    else:
        try:
            import time  # noqa: F401 (for _original)
            sleep = _original('time', 'sleep')  # noqa: F821 (agent.py)
        except BaseException:
            return True
    busy = hub['busy']
    seq = hub['seq']
    codes = _router_codes(hub)
    quiet = 0
    waited = 0.0
    while waited < limit:
        last = seq[0]
        sleep(LINGER_STEP)
        waited += LINGER_STEP
        if _finalizing():
            return True
        inside = _in_router(codes)
        if busy or seq[0] != last or inside:
            quiet = 0
            continue
        quiet += 1
        # Without the frames, a longer quiet stands in for them.
        if quiet >= (LINGER_QUIET if inside is not None else 5 * LINGER_QUIET):
            return True
    return False


def _keep(hub):
    """A write to the routers stays blocked (a full pipe): keep them for
    good, better a few objects left than a crash."""
    sys.__dict__.setdefault(KEEP_NAME, []).append(
        (hub['out'], hub['err'], hub['inp'], hub['dh']))


# ---- chunk ----
# --- stopping the code: the session's reader thread ---
#
# While the session's thread runs code it cannot read the socket, so once
# the request is in, a second thread, the reader, reads what pyglass sends
# (on a duplicate of the socket, with its own timeout) and queues it for
# the session's thread (_next_frame). A break frame that comes while code
# runs raises KeyboardInterrupt in the session's thread, and only there
# (PyThreadState_SetAsyncExc through ctypes, imported at the first break);
# at other times it is dropped. _run_start and _run_end bracket the code:
# _run_end stops the breaks and cancels one still pending before the
# agent's own code goes on. The reader ends when the connection ends or
# when _reader_stop shuts the socket's reading side down, and the session
# waits for it: no thread is left behind. The reader's box is a dict of
# plain objects (no cycle).
BREAK_AGAIN = 0.5  # seconds: a break sooner after the last raise is dropped


def _reader_start(sess):
    """Starts the reader. Without one (no thread could start) the session
    reads the socket itself and its code cannot be interrupted."""
    sock = sess['sock']
    rsock = None
    try:
        if PY3:
            rsock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0,
                                   _socket.dup(sock.fileno()))
        else:
            rsock = sock.dup()
            _cloexec(rsock)
        _fork_track(rsock)
        box = {'sock': rsock, 'halt': False, 'q': [], 'running': False,
               'busy': False, 'ident': _get_ident(), 'raised': 0,
               'last': None, 'setexc': None, 'clock': None,
               'mutex': _allocate_lock(),  # noqa: F821 (agent.py)
               'avail': _allocate_lock(),  # noqa: F821
               'done': _allocate_lock(),  # noqa: F821
               # Closes the socket and takes it out of the fork
               # handler's list: a child forked while the reader runs
               # must not keep it.
               'close': _fork_closer(rsock)}
        box['avail'].acquire()
        box['done'].acquire()
        # The interpreter's own start_new_thread: a monkey-patched one
        # (gevent) would make the reader a greenlet of a hub that never
        # runs on this thread.
        _original(_threadmod.__name__, 'start_new_thread')(_reader_main, (box,))  # noqa: F821
    except BaseException:
        if rsock is not None:
            _fork_closer(rsock)()
        return
    sess['reader'] = box


def _reader_main(box):
    try:
        while not box['halt']:
            t, payload = _recv(box)
            if t == T_BREAK:
                try:
                    _reader_break(box)
                except Exception:
                    pass
            else:
                _post(box, (t, payload))
    except BaseException:
        pass
    try:
        box['close']()
    except BaseException:
        pass
    try:
        _post(box, (None, b''))
    finally:
        box['done'].release()


def _post(box, item):
    m = box['mutex']
    m.acquire()
    try:
        box['q'].append(item)
        if box['avail'].locked():
            box['avail'].release()
    finally:
        m.release()


def _next_frame(sess):
    """The next frame from pyglass, through the reader if there is one;
    raises _Gone when the connection ended."""
    box = sess.get('reader')
    while box is None:
        t, payload = _recv(sess)
        if t != T_BREAK:
            return t, payload
    while True:
        m = box['mutex']
        m.acquire()
        try:
            q = box['q']
            item = q[0] if q else None
            if item is not None and item[0] is not None:
                del q[0]
        finally:
            m.release()
        if item is not None:
            if item[0] is None:
                raise _Gone()
            return item
        box['avail'].acquire()


# ---- chunk ----
def _setexc_func():
    """PyThreadState_SetAsyncExc(ident, exc), exc None cancelling. The
    function pointer is the one ctypes.pythonapi caches (it refers to
    itself: a fresh one per session would be cyclic garbage); its restype
    (int) and argtypes (none) are left as they are."""
    fresh = 'ctypes' not in sys.modules
    import ctypes
    if fresh:
        # Importing ctypes leaves a few unreachable objects (temporary
        # classes of its module code, 3.13+): pyglass made them, so it
        # frees them, with a collection of the youngest generation only
        # (they are young), a pause like the ones allocations cause.
        import gc
        gc.collect(0)
    f = ctypes.pythonapi.PyThreadState_SetAsyncExc
    idtype = ctypes.c_ulong if sys.version_info >= (3, 7) else ctypes.c_long
    obj = ctypes.py_object

    def setexc(ident, exc):
        return f(idtype(ident), None if exc is None else obj(exc))
    return setexc


def _reader_break(box):
    """A break frame: raise KeyboardInterrupt in the session's thread if it
    runs code and did not get one in the last BREAK_AGAIN seconds (so at
    most one can come after the code ended, see _run_code). busy is set
    before running is read: _run_end waits for it, so no raise comes after
    it cancelled the pending one."""
    if box['setexc'] is None:
        box['setexc'] = False
        try:
            import time
            box['clock'] = time.time
            box['setexc'] = _setexc_func()
        except Exception:
            pass  # no ctypes: the code cannot be interrupted
    if not box['setexc']:
        return
    now = box['clock']()
    last = box['last']
    if last is not None and 0 <= now - last < BREAK_AGAIN:
        return
    box['busy'] = True
    try:
        if box['running']:
            box['setexc'](box['ident'], KeyboardInterrupt)
            box['raised'] += 1
            box['last'] = now
    finally:
        box['busy'] = False


def _run_start(sess):
    box = sess.get('reader')
    if box is not None:
        box['last'] = None
        box['running'] = True


def _run_end(sess):
    """Ends the code's run: no break raises any more, one pending is
    cancelled, and what an interrupted router call of this thread left in
    the hub's busy list is removed. Idempotent."""
    box = sess.get('reader')
    if box is None:
        return
    box['running'] = False
    n = 0
    while box['busy'] and n < 100000:
        n += 1
        _pause()  # noqa: F821 (agent.py)
    if box['raised']:
        try:
            box['setexc'](box['ident'], None)
        except Exception:
            pass
    hub = sess.get('hub')
    if hub is not None:
        busy = hub['busy']
        me = box['ident']
        while me in busy:
            busy.remove(me)


def _reader_stop(sess):
    """Ends the reader and waits for it (up to 2 s; it is woken at once)."""
    box = sess.get('reader')
    if box is None:
        return
    sess['reader'] = None
    box['halt'] = True
    try:
        sess['sock'].shutdown(_socket.SHUT_RD)
    except BaseException:
        pass
    done = box['done']
    if PY3:
        done.acquire(True, 2.0)
    else:
        import time
        for _ in range(2000):
            if done.acquire(False):
                break
            time.sleep(0.001)
    box.clear()


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


def _report(sess, tb_next):
    """Writes the exception being handled on stderr, skipping the first
    traceback entry if tb_next (this file's frame that ran the code), and
    drops every reference to it before returning: a traceback refers to
    the frames it went through, and a frame holding it would be a cycle."""
    et, ev, tb = sys.exc_info()
    try:
        if tb_next and tb is not None:
            tb = tb.tb_next
        elif not tb_next:
            tb = None
        _write_exception(sess, et, ev, tb)
    finally:
        et = ev = tb = None


def _run_code(sess, co, ns):
    """Runs co in ns; returns (status, exited). A break raises
    KeyboardInterrupt in the code. One may also come just after the code
    ended (never more than one, see _reader_break), cutting the first
    _run_end short: the handlers run it again, now undisturbed."""
    try:
        try:
            _run_start(sess)
            exec(co, ns)
        finally:
            _run_end(sess)
    except SystemExit as e:
        _run_end(sess)
        return _exit_status(sess, e), True
    except BaseException:
        _run_end(sess)
        _report(sess, True)
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
        # What the process's exit status would be (sys.exit(256) is 0).
        return int(code) & 255 if -(1 << 31) <= code < (1 << 31) else 255
    try:
        _write(sess, T_STDERR, '%s\n' % (code,))
    except BaseException:
        pass
    return 1


def _op_exec(sess, params):
    src = params.get('code', b'')
    filename = _native_str(params.get('filename', b'<string>'))
    ns = _namespace(params)
    if filename != '<string>' and ns.get('__name__') == '__pyglass__':
        # As python sets it for a script or stdin; never in __main__'s.
        ns['__file__'] = filename
    co = None
    try:
        co = _compile_exec(src, filename)
    except BaseException:
        _report(sess, False)
    if co is None:
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
        box = [ns]
        ns = co = None
        _let_go(box)
    return status


# ---- chunk ----
# --- the namespace the user's code runs in ---

NS_NODES = 20000


def _namespace(params):
    """The globals for the user's code: __main__'s (namespace=main; a
    process without a __main__ module gets a fresh one) or a fresh dict
    whose __name__ is __pyglass__."""
    if params.get('namespace', b'fresh') == b'main':
        ns = getattr(sys.modules.get('__main__'), '__dict__', None)
        if type(ns) is dict:
            return ns
    return {'__name__': '__pyglass__', '__builtins__': _builtins}


def _let_go(box):
    """Drops pyglass's reference to the namespace box[0] when the user's
    code is done with it (box is emptied). __main__'s is left alone. A
    fresh one is emptied only if nothing outside it refers to it or to
    what it holds: then it and its contents are unreachable anyway (often
    cyclic: a function defined there has it as its globals), and emptying
    it frees them now instead of leaving them to the target's collector.
    Anything else (a function the code installed as a hook, a thread it
    started, a class it defined) keeps it intact: emptying it would break
    that code (NameError on its globals)."""
    ns = box.pop()
    if ns.get('__name__') != '__pyglass__' or ns is getattr(sys.modules.get('__main__'), '__dict__', None):
        return
    nodes = [ns]
    ns = None
    try:
        if _unreachable(nodes):
            nodes[0].clear()
    except BaseException:
        pass
    del nodes[:]


def _unreachable(nodes):
    """Whether nodes[0] (held only by nodes) is unreachable from outside
    the objects it reaches. nodes grows to those objects (gc.get_referents,
    not entering modules, module dicts and classes, at most NS_NODES); an
    object is referenced from outside when its reference count exceeds
    the references from nodes and from the others; from such objects what
    they reach is alive. Whatever is not entered counts as outside, so
    every doubt keeps the namespace. The reference counts are read in one
    C call and the graph is read again after them: if it changed
    meanwhile (another thread), the answer is no."""
    import gc
    getref = gc.get_referents
    skip = set([id(_builtins), id(_builtins.__dict__)])
    for m in list(sys.modules.values()):
        skip.add(id(m))
        skip.add(id(getattr(m, '__dict__', None)))
    m = None
    tracked = gc.is_tracked
    index = {id(nodes[0]): 0}
    edges = []
    seen = []
    j = 0
    while j < len(nodes):
        kids = []
        for c in getref(nodes[j]):
            seen.append(id(c))
            k = index.get(id(c))
            if k is None:
                # untracked objects hold no container, so cannot lead back
                if id(c) in skip or not tracked(c) or isinstance(c, (type, type(sys))):
                    continue
                if len(nodes) >= NS_NODES:
                    return False
                k = index[id(c)] = len(nodes)
                nodes.append(c)
            kids.append(k)
        c = None
        edges.append(kids)
        j += 1
    getrc = sys.getrefcount
    # what reading a count through map adds: nodes' own reference, map's
    base = list(map(getrc, [[]]))[0]
    before = list(map(id, getref(*nodes)))
    counts = list(map(getrc, nodes))
    if before != seen or list(map(id, getref(*nodes))) != seen:
        return False
    inner = [0] * len(nodes)
    for kids in edges:
        for k in kids:
            inner[k] += 1
    alive = [counts[k] - base - inner[k] > 0 for k in range(len(nodes))]
    stack = [k for k in range(len(nodes)) if alive[k]]
    while stack:
        for k in edges[stack.pop()]:
            if not alive[k]:
                alive[k] = True
                stack.append(k)
    return not alive[0]


# ---- chunk ----
def _op_shell_loaded(sess, params):
    """Loads shell.py (only shell sessions pay for compiling it), then
    serves the shell."""
    try:
        _load('shell.py')  # noqa: F821 (agent.py)
    except BaseException:
        _write(sess, T_STDERR, 'pyglass: cannot load the shell part of the agent\n')
        return 2
    return _op_shell(sess, params)  # noqa: F821 (shell.py)


def _hello():
    tid = 0
    try:
        f = None
        if hasattr(_threadmod, 'get_native_id'):
            f = _original(_threadmod.__name__, 'get_native_id')  # noqa: F821 (agent.py)
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
    if _forks_in_c():
        lines.append(b'cfork=uwsgi')
    return b'\n'.join(lines)


def _forks_in_c():
    """Whether this process is a uwsgi master that forks its workers in C
    without taking the GIL first (no py-call-uwsgi-fork-hooks): a worker
    forked while another thread holds the GIL waits for it for good."""
    u = sys.modules.get('uwsgi')
    if u is None:
        return False
    try:
        if u.masterpid() != os.getpid():
            return False
        on = u.opt.get('py-call-uwsgi-fork-hooks')
        return not on or on in (b'0', b'false', b'no', '0', 'false', 'no')
    except BaseException:
        return False


def _read_request(sess):
    params = {}
    for _ in range(MAX_PARAMS):
        t, payload = _recv(sess)
        if t == T_GO:
            return params
        if t == T_CLOSE:
            return None
        if t == T_PARAM:
            k, _, v = payload.partition(b'=')
            params[_native_str(k)] = v
    return None


def _cloexec(sock):
    """2.7 sockets are inheritable: not across an exec of the code's."""
    try:
        import fcntl
        fd = sock.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
    except BaseException:
        pass


def _connect(path):
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if not PY3:
            _cloexec(sock)
        sock.settimeout(10.0)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    _fork_track(sock)
    return sock


# ---- chunk ----
def _serve(sess, ended):
    """Serves one request; returns the exit status, None if there is none
    to send. Leaves the hub before it returns; appends the hub to ended if
    this session was its last."""
    hub = None
    try:
        _send(sess, T_HELLO, _hello())
        params = _read_request(sess)
        if params is None:
            return None
        op = params.get('op', b'')
        if op not in (b'exec', b'shell'):
            _write(sess, T_STDERR, 'pyglass: unknown operation %r\n' % (op,))
            return 2
        hub = _hub_join(sess)
        if hub is None:
            _write(sess, T_STDERR, 'pyglass: another agent version is active in this process\n')
            return 2
        sess['hub'] = hub
        _frames_safe()  # records a fork without after-fork code for the code run
        _reader_start(sess)
        if op == b'exec':
            return _op_exec(sess, params)
        return _op_shell_loaded(sess, params)
    except _Gone:
        return None
    finally:
        try:
            _flush(sess)
        except BaseException:
            pass
        if hub is not None:
            try:
                if _hub_leave(hub):
                    ended.append(hub)
            except BaseException:
                pass


def _main(d):
    try:
        sock = _connect(os.path.join(d, 's'))
    except BaseException:
        _remove_dir(d)  # noqa: F821 (agent.py)
        return
    sess = _new_session(sock)
    status = None
    ended = []
    try:
        status = _serve(sess, ended)
    except BaseException:
        pass
    _remove_dir(d)  # noqa: F821 (agent.py)
    # The exit status goes first, so that pyglass returns as soon as the
    # code is done; what follows is this thread's own clean-up, which
    # pyglass need not wait for.
    if status is not None and not sess['broken']:
        try:
            sock.sendall(_frame(T_EXIT, str(status).encode('ascii')))
        except BaseException:
            pass
    try:
        _reader_stop(sess)
    except BaseException:
        pass
    # The last session lets go of the routers only when no print can be
    # using them: usually a few milliseconds; if the target keeps writing
    # to them, up to LINGER_MAX, after which they are kept for good.
    if ended:
        try:
            if not _linger(ended[0], LINGER_SHORT) and not _linger(ended[0], LINGER_MAX):
                _keep(ended[0])
        except BaseException:
            pass
    del ended[:]
    sess.clear()
    exc_clear = getattr(sys, 'exc_clear', None)
    if exc_clear is not None:
        exc_clear()
    close = _fork_closer(sock)
    _forget(globals())  # noqa: F821 (agent.py)
    close()
