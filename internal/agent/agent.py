# pyglass in-target agent: the loader.
#
# Executed inside the target process by the bootstrap (see Bootstrap in
# protocol.go) in a private globals dict that holds _PYGLASS_DIR, the private
# directory D. It runs on the thread pyglass created, loads D/core.py (and
# D/shell.py for a shell session) into the same globals, connects to D/s,
# serves exactly one request (exec or shell) and removes D before it returns.
#
# Compiling holds the GIL in one C call, so the agent is compiled in short
# chunks with a pause between them in which the GIL is free: the target's
# other threads never wait long for it (compiling the whole agent at once
# stalled them for 5 to 10 ms).
#
# Rules this file follows (it runs inside someone else's program):
# - Python 2.7 and 3.6+ from the same source; ASCII only.
# - Never print to the target's streams, never let an exception out (the
#   bootstrap also swallows everything), never import threading (on 2.7
#   importing it from a non-main thread breaks shutdown). The one thread
#   the agent starts (_thread.start_new_thread), the session's reader in
#   core.py, ends before the session does.
# - Shared state while at least one session is active: sys._pyglass_hub and
#   routers on sys.stdout, sys.stderr, sys.stdin and sys.displayhook that
#   dispatch by thread ident. All are removed when the last session ends, if
#   they are still the installed objects (a router that someone else saved
#   and re-installs later only forwards to the original stream).
# - Leave nothing behind: when the session ends, every name of these
#   globals but __builtins__ is deleted, and no object the agent made may
#   outlive that, not even as cyclic garbage (core.py says how).
# - Modules this agent imports (_socket, codecs, gc, traceback, linecache,
#   __future__, fcntl and time on 2.7, ctypes and time at the first
#   interrupt) stay in sys.modules: removing them is unsafe because the
#   user's code, objects it created, or other threads of the target may hold
#   or import them concurrently, and 2.7 extension modules cannot be
#   re-initialised cleanly. They are all standard library modules.
#
# The frame format and the frame types are described in protocol.go; keep the
# two in sync.


import sys
import os

if sys.version_info[0] >= 3:
    import _thread as _threadmod
else:
    import thread as _threadmod


def _original(modname, name):
    """The interpreter's own modname.name (a C function), even after
    gevent's or eventlet's monkey-patching replaced it: their locks, sleep
    and get_ident create a hub (an event loop with its file descriptors)
    on the thread that first uses them, which is never destroyed. Read
    from the C module if it is still the original (a builtin function of
    that module; its __self__ is None on 2.7), else from what the
    patcher saved (gevent.monkey.saved, eventlet's
    sys.modules['__original_module_<name>']), looked up as data: no code
    of the patcher runs. The patched object if none is found."""
    mods = sys.modules
    mod = mods.get(modname)
    if mod is None:
        mod = __import__(modname)
    f = getattr(mod, name, None)
    if type(f) is type(len) and getattr(f, '__self__', None) in (mod, None):
        return f
    found = []
    saved = getattr(mods.get('gevent.monkey'), 'saved', None)
    if type(saved) is dict and type(saved.get(modname)) is dict:
        found.append(saved[modname].get(name))
    found.append(getattr(mods.get('__original_module_' + modname), name, None))
    for g in found:
        if type(g) is type(len):
            return g
    return f


_allocate_lock = _original(_threadmod.__name__, 'allocate_lock')

CHUNK_MARK = b'\n# ---- chunk ----\n'
MAX_CHUNKS = 64
PAUSE = 0.0002  # seconds without the GIL between two chunks


def _pauser():
    """Returns a function that blocks PAUSE seconds with the GIL released,
    or does nothing if that needs an import (2.7 without time loaded)."""
    if sys.version_info[0] >= 3:
        lock = _allocate_lock()
        lock.acquire()

        def pause():
            lock.acquire(True, PAUSE)
        return pause
    if 'time' not in sys.modules:
        return lambda: None
    sleep = _original('time', 'sleep')
    return lambda: sleep(PAUSE)


_pause = _pauser()


def _load(name):
    """Compiles and runs D/name in these globals, chunk by chunk, pausing
    between two chunks (reading the file released the GIL before the
    first, connecting or receiving releases it after the last)."""
    f = open(os.path.join(_PYGLASS_DIR, name), 'rb')  # noqa: F821 (bootstrap)
    try:
        src = f.read()
    finally:
        f.close()
    g = globals()
    for i, part in enumerate(src.split(CHUNK_MARK, MAX_CHUNKS)):
        if i:
            _pause()
        exec(compile(part, '<pyglass-agent>', 'exec'), g)


def _remove_dir(d):
    try:
        names = os.listdir(d)
    except BaseException:
        return
    for name in names[:256]:
        try:
            os.unlink(os.path.join(d, name))
        except BaseException:
            pass
    try:
        os.rmdir(d)
    except BaseException:
        pass


def _start(d):
    try:
        _load('core.py')
    except BaseException:
        _remove_dir(d)
        return
    _main(d)  # noqa: F821 (core.py)


def _forget(g):
    """Deletes every name of the agent's globals but __builtins__, which
    functions still running in other threads (the routers) need: before
    3.10 a function finds its builtins in its globals at each call."""
    for name in list(g):
        if name != '__builtins__':
            del g[name]


def _finish(g):
    if sys.version_info[0] < 3:
        sys.exc_clear()
    _forget(g)


# core.py's _main usually empties the globals itself, just before its last
# send; whatever path was taken, nothing is left after this.
try:
    _start(_PYGLASS_DIR)  # noqa: F821 (set by the bootstrap)
finally:
    if '_finish' in globals():
        _finish(globals())
# No global name may be used below this line.
