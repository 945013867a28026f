# pyglass leak reports: helpers shared by every report script.
#
# This file is concatenated (by the Go side) before one report body and
# footer.py; the whole, cut in pieces before top-level statements that
# follow two blank lines, is compiled and run a piece at a time after a
# generated line that binds _pg_opts (leak/scripts.go: build), inside the
# target in a fresh namespace on its own thread.
# One source for CPython 2.7 and 3.6+: no f-strings, no print statement.
#
# Rules every helper follows:
#  * every global name starts with _pg_; footer.py deletes them all, so no
#    function/globals reference cycle survives the run;
#  * modules are imported through _pg_import only, and only C modules
#    without Python dependencies (gc, time, itertools, _collections,
#    _tracemalloc). They stay imported: a module taken out of sys.modules
#    again is cyclic garbage (the module, its functions, its spec and, for
#    multi-phase modules, its types), which the next garbage report would
#    show as the target's; imported once, they cost nothing more;
#  * the thread primitives (sleep, get_ident) are the interpreter's own,
#    even after gevent's or eventlet's monkey-patching (_pg_original):
#    theirs would create a hub, with its file descriptors, on this thread;
#  * no user-defined Python code is called on purpose: reprs, names and
#    attribute lookups go through C descriptors of the builtin types;
#  * every loop over target data is bounded.
import sys as _pg_sys

_pg_PY2 = _pg_sys.version_info[0] == 2
_pg_VERSION = '%d.%d.%d' % tuple(_pg_sys.version_info[:3])

if _pg_PY2:
    _pg_text = unicode  # noqa: F821 (Python 2 only)
    _pg_ints = (int, long)  # noqa: F821
    _pg_strs = (str, unicode)  # noqa: F821

    class _pg_Old:
        pass
    _pg_InstanceType = type(_pg_Old())
    _pg_ClassType = type(_pg_Old)
    del _pg_Old
    _pg_BUILTINS = '__builtin__'
else:
    _pg_text = str
    _pg_ints = (int,)
    _pg_strs = (str, bytes)
    _pg_InstanceType = None
    _pg_ClassType = None
    _pg_BUILTINS = 'builtins'

_pg_ModuleType = type(_pg_sys)
_pg_member = type(type.__dict__['__basicsize__'])
_pg_getset = type(type.__dict__['__dict__'])
_pg_tmodule = type.__dict__['__module__']
_pg_tqualname = type.__dict__.get('__qualname__') or type.__dict__['__name__']
_pg_tmro = type.__dict__['__mro__']
_pg_CONTAINERS = (dict, list, tuple, set, frozenset)


def _pg_import(name):
    """Imports a C module (it stays imported, see the top)."""
    return __import__(name)


def _pg_try_import(name):
    try:
        return _pg_import(name)
    except ImportError:
        return None


def _pg_original(modname, name):
    """The interpreter's own modname.name (a C function), even after
    gevent's or eventlet's monkey-patching replaced it: from the C module
    if it is still the original, else from what the patcher saved
    (gevent.monkey.saved, eventlet's sys.modules['__original_module_<name>']),
    read as data: no code of the patcher runs. The agent does the same."""
    mods = _pg_sys.modules
    mod = _pg_import(modname)
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


_pg_time = _pg_try_import('time')
_pg_sleep = None
if _pg_time is not None:
    _pg_sleep = _pg_original('time', 'sleep')
_pg_get_ident = _pg_original(_pg_PY2 and 'thread' or '_thread', 'get_ident')


def _pg_yield():
    """Lets other threads of the target take the GIL."""
    if _pg_sleep is not None:
        _pg_sleep(0)


def _pg_now():
    if _pg_time is None:
        return 0.0
    return _pg_time.time()


# The clock of a run without pause: this thread's CPU time (3.7+), else
# the process's (3.6: process_time; 2.7: clock), so that a wait to take
# the GIL back (another thread asked for it) or the machine's load is not
# counted as a hold; wall time if none of them exists.
_pg_cpu = _pg_now
for _pg_c in ('thread_time', 'process_time', 'clock'):
    if _pg_time is not None and type(getattr(_pg_time, _pg_c, None)) is type(len):
        _pg_cpu = getattr(_pg_time, _pg_c)
        break
_pg_c = None


# ---- JSON (the json module is not imported: it would pull in Python
# modules that the target may not have loaded).
def _pg_jstr(s, out):
    if not isinstance(s, _pg_text):
        s = s.decode('utf-8', 'replace')
    parts = ['"']
    for ch in s:
        o = ord(ch)
        if 0x20 <= o < 0x7f and ch != '"' and ch != '\\':
            parts.append(str(ch))
        elif ch == '"':
            parts.append('\\"')
        elif ch == '\\':
            parts.append('\\\\')
        elif o > 0xffff:
            o -= 0x10000
            parts.append('\\u%04x\\u%04x' % (0xd800 + (o >> 10), 0xdc00 + (o & 0x3ff)))
        else:
            parts.append('\\u%04x' % o)
    parts.append('"')
    out.append(''.join(parts))


def _pg_json(v, out):
    if v is None:
        out.append('null')
    elif v is True:
        out.append('true')
    elif v is False:
        out.append('false')
    elif type(v) in _pg_ints:
        out.append(str(int(v)) if not _pg_PY2 else str(v).rstrip('L'))
    elif type(v) is float:
        if v != v or v in (float('inf'), float('-inf')):
            out.append('null')
        else:
            out.append(repr(v))
    elif type(v) in _pg_strs:
        _pg_jstr(v, out)
    elif type(v) in (list, tuple):
        out.append('[')
        first = True
        for x in v:
            if not first:
                out.append(',')
            first = False
            _pg_json(x, out)
        out.append(']')
    elif type(v) is dict:
        out.append('{')
        first = True
        for k in sorted(v):
            if not first:
                out.append(',')
            first = False
            _pg_jstr(k, out)
            out.append(':')
            _pg_json(v[k], out)
        out.append('}')
    else:
        _pg_jstr('<%s>' % type(v).__name__, out)


def _pg_emit(doc):
    out = []
    _pg_json(doc, out)
    out.append('\n')
    _pg_sys.stdout.write(str(''.join(out)))
    try:
        _pg_sys.stdout.flush()
    except Exception:
        pass


# ---- names and safe reprs
def _pg_cls(o):
    """The class of o without calling Python code (2.7 old-style aware)."""
    t = type(o)
    if _pg_PY2 and t is _pg_InstanceType:
        return o.__class__
    return t


def _pg_tname(t, qualified=True):
    """'module.QualName' of a class; builtins are given without module."""
    try:
        if isinstance(t, type):
            m = _pg_tmodule.__get__(t, type)
            q = _pg_tqualname.__get__(t, type)
        elif _pg_PY2 and type(t) is _pg_ClassType:
            m = t.__module__
            q = t.__name__
        else:
            return '?'
    except Exception:
        return '?'
    if type(q) not in _pg_strs:
        q = '?'
    if not qualified or type(m) not in _pg_strs or m in (_pg_BUILTINS, ''):
        return q
    return m + '.' + q


_pg_REPR_MAX = 200


def _pg_cut(s):
    if len(s) > _pg_REPR_MAX:
        return s[:_pg_REPR_MAX - 3] + '...'
    return s


def _pg_addr(o):
    return '0x%x' % id(o)


def _pg_srepr(o, depth=0):
    """A repr that never runs code of the target's classes.

    Scalars and strings use their builtin repr (bounded); builtin
    containers are shown with their first items; every other object is
    '<module.Type object at 0x...>', whatever its __repr__.
    """
    t = type(o)
    try:
        if o is None or t is bool or t is float or t is complex:
            return repr(o)
        if t in _pg_ints:
            if o.bit_length() > 600:
                return '<int of %d bits>' % o.bit_length()
            return repr(o)
        if t in _pg_strs:
            s = repr(o[:_pg_REPR_MAX])
            if len(o) > _pg_REPR_MAX:
                s += '...'
            return s
        if t in _pg_CONTAINERS:
            n = len(o)
            if depth >= 2 and n:
                return '%s(len=%d)' % (t.__name__, n)
            items = []
            i = 0
            if t is dict:
                for k in o:
                    if i >= 4:
                        break
                    items.append(_pg_srepr(k, depth + 1) + ': ' + _pg_srepr(o[k], depth + 1))
                    i += 1
            else:
                for x in o:
                    if i >= 4:
                        break
                    items.append(_pg_srepr(x, depth + 1))
                    i += 1
            body = ', '.join(items)
            if n > i:
                body += ', ... (%d items)' % n
            if t is list:
                return _pg_cut('[' + body + ']')
            if t is tuple:
                return _pg_cut('(' + body + (',)' if n == 1 else ')'))
            if t is dict:
                return _pg_cut('{' + body + '}')
            return _pg_cut('%s({%s})' % (t.__name__, body))
        if isinstance(o, type) or (_pg_PY2 and t is _pg_ClassType):
            return "<class '%s'>" % _pg_tname(o)
        return '<%s object at %s>' % (_pg_tname(_pg_cls(o)), _pg_addr(o))
    except Exception:
        return '<%s object at %s>' % (_pg_tname(t), _pg_addr(o))


def _pg_seq_edge(p, c, bound):
    """'[i]' for the first item of the list or tuple p that is c (among
    its first bound items), else '?'."""
    i = 0
    for v in p:
        if v is c:
            return '[%d]' % i
        i += 1
        if i > bound:
            break
    return '?'


def _pg_errstr(e):
    try:
        return _pg_cut('%s: %s' % (type(e).__name__, e))
    except Exception:
        return type(e).__name__


def _pg_clear_exc():
    if _pg_PY2:
        _pg_sys.exc_clear()
