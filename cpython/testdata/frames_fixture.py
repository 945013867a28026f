# -*- coding: utf-8 -*-
# Fixture for the cpython stack-decoder tests (Python 2.7 and 3.6+).
#
# The main thread builds a deep, varied stack (class body, decorator,
# method, list comprehension, generator, generator expression, lambda,
# nested function, a 500-deep recursion in a module whose path is not
# ASCII, a function whose name is not ASCII on 3.x) and blocks in
# time.sleep. A helper thread then reads the main thread's frames with
# sys._current_frames() and prints the ground truth on one line:
#   READY {"frame": ..., "stack": [[file, line, name], ...], ...}
# (outermost first, as a traceback prints it).
import json
import os
import sys
import threading
import time

PY3 = sys.version_info[0] >= 3
STATE = {'ready': threading.Event()}
KEEP = []  # keeps the objects whose ids are printed alive

HERE = os.path.dirname(os.path.abspath(__file__))
SUBDIR_NAME = u'donn\u00e9es_\u03bb'
if not PY3:
    SUBDIR_NAME = SUBDIR_NAME.encode('utf-8')
SUBDIR = os.path.join(HERE, SUBDIR_NAME)
if not os.path.isdir(SUBDIR):
    os.mkdir(SUBDIR)

MODULE = u'''# -*- coding: utf-8 -*-
def recurse(n, k):
    if n == 0:
        return k()
    return recurse(n - 1, k)
'''
if PY3:
    MODULE += u'''
def na\u00efve_\u51fd\u6570(k):
    return k()
'''
with open(os.path.join(SUBDIR, 'deep_mod.py'), 'wb') as f:
    f.write(MODULE.encode('utf-8'))
sys.path.insert(0, SUBDIR)
import deep_mod  # noqa: E402

SIMPLE = (int, float, str, bytes, bool, type(None))
if not PY3:
    SIMPLE += (long, unicode)  # noqa: F821
CONTAINERS = (tuple, list, dict, set, frozenset)


def expect_repr(v):
    """What Repr must print for v (see cpython/locals.go)."""
    if type(v) in SIMPLE:
        if isinstance(v, (str, bytes)) or (not PY3 and type(v) is unicode):  # noqa: F821
            if len(v) > 200:
                return repr(v[:200]) + '...'
            return repr(v)
        r = repr(v)
        if len(r) > 200:
            r = r[:200] + '...'
        return r
    if type(v) in (list, tuple, dict, set, frozenset) and len(v) == 0:
        return repr(v)
    if isinstance(v, type):
        # type.__repr__, with __name__ for __qualname__.
        kind = 'class' if PY3 or v.__flags__ & (1 << 9) else 'type'
        if v.__module__ in ('builtins', '__builtin__'):
            return "<%s '%s'>" % (kind, v.__name__)
        return "<%s '%s.%s'>" % (kind, v.__module__, v.__name__)
    if isinstance(v, CONTAINERS):
        return '%s(len=%d)' % (type(v).__name__, len(v))
    return '<%s object at %#x>' % (type(v).__name__, id(v))


class Plain(object):
    pass


def make_checks():
    """Objects for DictGet/AttrGet/TypeName, as [address, key, address]."""
    big = dict(('k%d' % i, i * 1000) for i in range(1000))
    del big['k5']
    mixed = {1: 'one', 'two': 2.5, (3,): 'three'}
    inst = Plain()
    inst.alpha, inst.beta, inst.gamma = 'a' * 3, 'b' * 3, 'g' * 3
    inst3 = Plain()  # its attributes stay in values (3.11+), never a dict
    inst3.one, inst3.two = 'o' * 3, 't' * 3
    inst2 = Plain()
    inst2.alpha, inst2.beta = 'a2' * 3, 'b2' * 3
    inst2.__dict__  # materialize the dict on 3.11+
    many = Plain()
    for i in range(40):
        setattr(many, 'a%d' % i, 'v%d' % i * 2)
    th = threading.current_thread()
    KEEP.extend([big, mixed, inst, inst2, inst3, many, th])
    name_attr = '_name' if PY3 else '_Thread__name'
    return {
        'dict': [
            [id(big), 'k777', id(big['k777'])],
            [id(big), 'k5', 0],
            [id(mixed), 'two', id(mixed['two'])],
            [id(globals()), 'STATE', id(STATE)],
            [id(inst.__dict__), 'beta', id(inst.beta)],
        ],
        'attr': [
            [id(inst), 'beta', id(inst.beta)],
            [id(inst), 'missing', 0],
            [id(inst2), 'alpha', id(inst2.alpha)],
            [id(inst3), 'two', id(inst3.two)],
            [id(inst3), 'three', 0],
            [id(many), 'a33', id(many.a33)],
            [id(th), name_attr, id(getattr(th, name_attr))],
        ],
        'dictint': [
            [id(threading._active), th.ident, id(th)],
            [id(mixed), 1, id(mixed[1])],
            [id(mixed), 2, 0],
        ],
        'type': [
            [id(big), 'dict'], [id(inst), 'Plain'], [id(th), '_MainThread'],
            [id(1.5), 'float'], [id(None), 'NoneType'],
        ],
    }


def blocker(arg):
    i = 42
    neg = -7
    zero = 0
    big = -(2 ** 100)
    huge = 7 ** 300
    fl = 0.1
    fl2 = 1e22
    fl3 = -1.5e-7
    fl4 = 123456789.0
    t, f, n = True, False, None
    s = 'plain'
    s2 = u'h\u00e9llo "w\u00f6rld" \u2603 \U0001f600 \t\n\x00\x7f\xa0'
    s3 = "it's"
    long_s = 'x' * 300
    b = b'\x00ab\'"\\\xff'
    lst = [1, 2, 3]
    tup = (1,)
    d = {'a': 1}
    st = set([1, 2])
    obj = Plain()
    cellvar = 'captured'

    def clos():
        return cellvar
    STATE['checks'] = make_checks()
    STATE['frame'] = id(sys._getframe())
    STATE['ready'].set()
    STATE['block_line'] = sys._getframe().f_lineno + 1
    while True: time.sleep(3600)  # noqa: E701


def inner_chain():
    def inner():
        if PY3:
            return getattr(deep_mod, u'na\u00efve_\u51fd\u6570')(lambda: blocker('arg'))
        return blocker('arg')
    return deep_mod.recurse(500, inner)


def gen(k):
    yield list(k() for _ in [1])


def deco(fn):
    def wrapper(*a, **kw):
        return fn(*a, **kw)
    return wrapper


class Middle(object):
    @deco
    def method(self, k):
        return [x for x in gen(k)]


def start():
    return Middle().method(lambda: inner_chain())


def report():
    STATE['ready'].wait()
    main = threading.current_thread()
    for t in threading.enumerate():
        if t.name == 'MainThread':
            main = t
    frame = None
    for _ in range(1000):
        frame = sys._current_frames()[main.ident]
        if frame.f_lineno == STATE.get('block_line'):
            break
        time.sleep(0.01)
    stack = []
    f = frame
    while f is not None:
        code = f.f_code
        name = getattr(code, 'co_qualname', code.co_name)
        loc = None
        if code.co_flags & 1:  # CO_OPTIMIZED: fast locals
            loc = dict((k, expect_repr(v)) for k, v in f.f_locals.items())
        stack.append([code.co_filename, f.f_lineno, name, loc])
        f = f.f_back
    stack.reverse()
    out = {'frame': STATE['frame'], 'stack': stack, 'checks': STATE['checks']}
    sys.stdout.write('READY ' + json.dumps(out) + '\n')
    sys.stdout.flush()


threading.Thread(target=report).start()


class Top(object):
    value = start()
