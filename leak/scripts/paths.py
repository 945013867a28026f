# pyglass objects --paths TYPE: who keeps the instances of TYPE alive.
# Concatenated after objects.py (its walk finds the instances). Then, up to
# _pg_opts['limit'] times: take an instance no holder found so far reaches,
# find the shortest reference path to it from a named root (a module
# global, a class attribute, gc.garbage) by a breadth-first search, and
# count the instances that root reaches (a depth-first walk). Every search
# is bounded (_pg_PATH_BUDGET visits) and pauses every _pg_SLICE seconds.
# No dictionary or set grows with the heap: visited objects, the instances
# and those already reached are bits in _pg_marker's bitmaps (growing,
# rehashing or freeing a dict of a million ids holds the GIL for tens to
# hundreds of milliseconds).
# Edges are named from the builtin containers' own items, an instance's
# __dict__ read through the C descriptor, or '?'; no code of the target's
# classes runs.
_pg_PATH_BUDGET = 3000000
# The searches look at the clock every _pg_TICK steps (an object taken or
# one of its references looked at): the cost of a step varies, from an
# object with one reference to a dict with thousands, and with tracemalloc
# on (which traces every int the marking makes, and computes the
# allocating line) a step costs 10-20 times more. Counting objects alone
# (every 256) let runs of 15-22 ms through there (1M heap, 3.12).
_pg_TICK = 64


def _pg_type_match(want):
    cache = {}

    def match(o):
        t = _pg_cls(o)
        m = cache.get(t)
        if m is None:
            n = _pg_tname(t)
            m = cache[t] = (n == want or ('.' not in want and n.rsplit('.', 1)[-1] == want))
        return m
    return match


def _pg_named_roots(gc, state):
    """[names, objects, n]: every module global and class attribute, and
    gc.garbage (the first n), then the other threads' variables (two
    lists rather than a tuple per root: tuples the collector tracks, kept,
    would make it run during the search)."""
    mdict = _pg_ModuleType.__dict__['__dict__']
    tdict = type.__dict__['__dict__']
    names = ['gc.garbage']
    objs = [gc.garbage]
    for mname, mod in sorted(list(_pg_sys.modules.items()), key=lambda kv: str(kv[0])):
        if type(mod) is not _pg_ModuleType:
            continue
        try:
            d = mdict.__get__(mod, _pg_ModuleType)
        except Exception:
            continue
        _pg_pause(state)
        i = 0
        for k, v in list(dict.items(d)):
            i += 1
            if i & 63 == 0:
                _pg_pause(state)
            if type(k) not in _pg_strs or k.startswith('__') or type(v) is _pg_ModuleType:
                continue
            name = '%s.%s' % (mname, k)
            if isinstance(v, type):
                try:
                    cd = tdict.__get__(v, type)
                    items = list(cd.items())
                except Exception:
                    items = []
                for ck, cv in items:
                    if type(ck) in _pg_strs and not ck.startswith('__'):
                        names.append('%s.%s' % (name, ck))
                        objs.append(cv)
            names.append(name)
            objs.append(v)
    nmod = len(objs)
    _pg_thread_roots(gc, names, objs, state)
    return [names, objs, nmod]


def _pg_idict(o):
    """o's instance __dict__ through the C descriptor, or None."""
    try:
        mro = _pg_tmro.__get__(type(o), type)
    except Exception:
        return None
    tdict = type.__dict__['__dict__']
    for klass in mro[:64]:
        desc = tdict.__get__(klass, type).get('__dict__')
        if desc is not None:
            if type(desc) is not _pg_getset:
                return None
            try:
                d = desc.__get__(o, type(o))
            except Exception:
                return None
            return d if type(d) is dict else None
    return None


def _pg_thread_label(ident):
    """'thread 4242 "worker"': the thread's kernel id (threading's
    _native_id, 3.8+; else its ident) and name, read from threading's
    table as data."""
    tid, name = ident, None
    mod = _pg_sys.modules.get('threading')
    active = None
    if type(mod) is _pg_ModuleType:
        active = _pg_ModuleType.__dict__['__dict__'].__get__(mod, _pg_ModuleType).get('_active')
    th = dict.get(active, ident) if type(active) is dict else None
    d = _pg_idict(th) if th is not None else None
    if d is not None:
        n = d.get('_native_id')
        if type(n) in _pg_ints:
            tid = n
        name = d.get('_name', d.get('_Thread__name'))
    if type(name) in _pg_strs:
        return 'thread %d "%s"' % (tid, _pg_cut(name))
    return 'thread %d' % tid


def _pg_thread_roots(gc, names, objs, state):
    """Adds the variables of the other threads' running functions: named
    'thread 4242 "worker": grow() local buf' from 3.13 on (f_locals is a
    view there, PEP 667), 'thread 4242 "worker": a local of grow()' before
    3.11 (the frame's references, without names: reading f_locals would
    store a dict in the frame). Not on 3.11 and 3.12 (f_locals would keep
    the objects alive: the census says so in a note), nor in a process
    forked without Python's after-fork code (sys._current_frames() would
    crash it; the census says so)."""
    getframes = getattr(_pg_sys, '_current_frames', None)
    v = _pg_sys.version_info[:2]
    if getframes is None or getattr(_pg_sys, '_pyglass_stale_threads', False) or (3, 11) <= v < (3, 13):
        return
    own = _pg_get_ident()
    getref = gc.get_referents
    for ident, f in list(getframes().items()):
        if ident == own:
            continue
        label = _pg_thread_label(ident)
        depth = 0
        while f is not None and depth < 1000:
            depth += 1
            co = f.f_code
            back = f.f_back
            if not co.co_flags & 0x2 or co.co_filename.startswith('<pyglass'):
                f = back
                continue  # module code (its variables are globals), or pyglass's
            fn = '%s()' % co.co_name
            try:
                if v >= (3, 13):
                    for k, x in list(f.f_locals.items()):
                        names.append('%s: %s local %s' % (label, fn, k))
                        objs.append(x)
                else:
                    skip = (back, co, f.f_globals, f.f_builtins)
                    for x in getref(f):
                        if not any(x is y for y in skip):
                            names.append('%s: a local of %s' % (label, fn))
                            objs.append(x)
            except Exception:
                pass
            f = back
            _pg_pause(state)
        f = back = co = x = None


def _pg_pause(state):
    """Sleeps when the run began more than _pg_SLICE ago. state is
    [when the run ends (wall clock), longest run (_pg_cpu), _pg_cpu
    when the run began]."""
    if _pg_now() > state[0]:
        state[1] = max(state[1], _pg_cpu() - state[2])
        _pg_sleep(0.0001)
        state[2] = _pg_cpu()
        state[0] = _pg_now() + _pg_SLICE


def _pg_tester(bits):
    """A function that tells whether o is marked in the bitmap pages of
    bits (filled by _pg_marker)."""
    def has(o):
        a = id(o) >> 4
        b = bits.get(a >> 12)
        return b is not None and b[(a & 0xfff) >> 3] & (1 << (a & 7)) != 0
    return has


def _pg_referents(getref, o, state):
    """The referents of o; a big list, tuple, dict, set or frozenset
    (exactly those classes: a subclass's own methods are never called) is
    taken _pg_BIG items at a time with a pause between (one
    gc.get_referents call of a million-item list holds the GIL for
    milliseconds). A dict or set changed while taken gives the rest in
    one call (what was already given may come again). Any other object
    with more references is given in pieces too, with pauses."""
    t = type(o)
    if (t is list or t is tuple) and t.__len__(o) > _pg_BIG:
        return _pg_seq_pieces(o, t.__getitem__, t.__len__(o), state)
    if (t is dict or t is set or t is frozenset) and t.__len__(o) > _pg_BIG:
        return _pg_iter_pieces(getref, o, t, state)
    return _pg_list_pieces(getref(o), state)


def _pg_list_pieces(refs, state):
    if len(refs) <= _pg_BIG:
        return refs
    return _pg_seq_pieces(refs, list.__getitem__, len(refs), state)


def _pg_seq_pieces(o, get, n, state):
    for i in range(0, n, _pg_BIG):
        k = 0
        for c in get(o, slice(i, i + _pg_BIG)):
            yield c
            k += 1
            if k & 255 == 0:
                _pg_pause(state)  # what the caller does with each takes time


def _pg_iter_pieces(getref, o, t, state):
    islice = _pg_import('itertools').islice
    if t is dict:
        it = getattr(dict, 'iteritems', dict.items)(o)
    else:
        it = t.__iter__(o)
    it = iter(it)
    while True:
        try:
            chunk = list(islice(it, _pg_BIG))
        except RuntimeError:
            for c in _pg_list_pieces(getref(o), state):
                yield c
            return
        k = 0
        for c in chunk:
            if t is dict:
                yield c[0]
                yield c[1]
            else:
                yield c
            k += 1
            if k & 255 == 0:
                _pg_pause(state)
        if len(chunk) < _pg_BIG:
            return
        chunk = None


def _pg_drop(objs, state):
    """Empties the list objs a piece at a time, pausing (taking a million
    references off at once holds the GIL for milliseconds)."""
    while objs:
        del objs[-_pg_BIG:]
        _pg_pause(state)


def _pg_reaches(gc, root, isfound, cover, state):
    """How many instances (isfound) are reachable from root (bounded),
    each passed to cover, and whether the walk finished."""
    n = [0]
    seen = {}
    mark = _pg_marker(seen)
    mark(root)

    def add(c):
        if isfound(c):
            n[0] += 1
            cover(c)
    add(root)
    done = _pg_dfs(gc, [root], mark, state, add)
    seen.clear()
    return n[0], done


def _pg_dfs(gc, stack, mark, state, add):
    """Walks depth-first from the objects on stack into every referent
    mark lets through, calling add (when not None) on each; bounded.
    Returns whether it finished."""
    getref = gc.get_referents
    n = 0
    tick = _pg_TICK
    while stack and n < _pg_PATH_BUDGET:
        o = stack.pop()
        n += 1
        tick -= 1
        if tick == 0:
            tick = _pg_TICK
            _pg_pause(state)
        for c in _pg_referents(getref, o, state):
            tick -= 1
            if tick == 0:
                tick = _pg_TICK
                _pg_pause(state)
            if mark(c):
                if add is not None:
                    add(c)
                stack.append(c)
    done = not stack
    o = c = None
    _pg_drop(stack, state)
    return done


def _pg_retained(gc, roots, holder, own, state):
    """What only holder keeps alive: the objects reachable from it that no
    other named root reaches without passing through it, with their
    sys.getsizeof sizes; and whether both walks finished."""
    getsizeof = _pg_sys.getsizeof
    seen = {}
    mark = _pg_marker(seen)
    for o in own:
        mark(o)
    mark(holder)
    stack = []
    k = 0
    for o in [_pg_sys.modules] + roots[1]:
        if mark(o):
            stack.append(o)
        k += 1
        if k & 63 == 0:
            _pg_pause(state)
    o = None
    done = _pg_dfs(gc, stack, mark, state, None)
    size = [getsizeof(holder, 0)]

    def add(c):
        try:
            size[0] += getsizeof(c, 0)
        except Exception:
            pass
    stack = [holder]
    done = _pg_dfs(gc, stack, mark, state, add) and done
    total = size[0]
    seen.clear()
    return total, done


def _pg_path_to(gc, roots, want, state, upto):
    """Shortest path [obj, ...] from a named root to an object for which
    want(o) is true from one of the first upto roots, with the root's name;
    (None, None) if none is found.
    Breadth-first, one list per level; the path is then found back level
    by level: a parent is an object of the level before that refers to
    the child (any one gives a shortest path)."""
    getref = gc.get_referents
    seen = {}
    mark = _pg_marker(seen)
    level = []
    names = []
    rnames, robjs = roots[0], roots[1]
    for i in range(min(upto, len(robjs))):
        if mark(robjs[i]):
            level.append(robjs[i])
            names.append(rnames[i])
        if i & 63 == 63:
            _pg_pause(state)  # thousands of roots; with tracemalloc on, 1-2 us each
    o = None
    levels = []
    hit = None
    n = 0
    tick = _pg_TICK
    while level and n < _pg_PATH_BUDGET and hit is None:
        levels.append(level)
        nxt = []
        for o in level:
            n += 1
            tick -= 1
            if tick == 0:
                tick = _pg_TICK
                _pg_pause(state)
            if want(o):
                hit = o
                break
            for c in _pg_referents(getref, o, state):
                tick -= 1
                if tick == 0:
                    tick = _pg_TICK
                    _pg_pause(state)
                if mark(c):
                    nxt.append(c)
        level = nxt
    o = c = level = nxt = None
    seen.clear()
    chain = None
    if hit is not None:
        chain = [hit]
        for j in range(len(levels) - 2, -1, -1):
            p = _pg_referrer(gc, levels[j], chain[-1], state)
            if p is None:
                chain = None  # the heap changed meanwhile
                break
            chain.append(p)
            p = None
    hit = None
    name = None
    if chain is not None:
        chain.reverse()
        i = _pg_index(levels[0], chain[0], state)
        if i >= 0:
            name = names[i]
        else:
            chain = None
    for lv in levels:
        _pg_drop(lv, state)
    del levels[:]
    return name, chain


def _pg_referrer(gc, objs, child, state):
    """The first of objs that refers to child, or None."""
    getref = gc.get_referents
    tick = _pg_TICK
    for o in objs:
        tick -= 1
        if tick == 0:
            tick = _pg_TICK
            _pg_pause(state)
        for c in _pg_referents(getref, o, state):
            tick -= 1
            if tick == 0:
                tick = _pg_TICK
                _pg_pause(state)
            if c is child:
                return o
    return None


def _pg_index(seq, x, state):
    """The index of the first item of seq that is x (not ==: no code of the
    target runs), or -1; pauses on long sequences."""
    i = 0
    for v in seq:
        if v is x:
            return i
        i += 1
        if i & 1023 == 0:
            _pg_pause(state)
    return -1


def _pg_step_edge(p, c, state):
    """The reference from p to c: '[3]', "['key']", '.attr', '<key>' or '?'."""
    t = type(p)
    if t is dict or isinstance(p, dict):
        i = 0
        try:
            for k, v in getattr(dict, 'iteritems', dict.items)(p):
                if v is c:
                    return '[' + _pg_srepr(k, 2) + ']'
                if k is c:
                    return '<key>'
                i += 1
                if i & 1023 == 0:
                    _pg_pause(state)
                if i > 1000000:
                    break
        except RuntimeError:
            pass  # changed size during a pause
        return '?'
    if t is list or t is tuple:
        i = _pg_index(p, c, state)
        return '[%d]' % i if i >= 0 else '?'
    if t is set or t is frozenset:
        return '<member>'
    try:
        mro = _pg_tmro.__get__(t, type)
    except Exception:
        return '?'
    tdict = type.__dict__['__dict__']
    for klass in mro[:64]:
        if klass is not object and _pg_tmodule.__get__(klass, type) != _pg_BUILTINS:
            continue  # only the builtin types' own descriptors run
        for name in _pg_EDGE_ATTRS:
            desc = tdict.__get__(klass, type).get(name)
            if type(desc) not in (_pg_member, _pg_getset):
                continue
            try:
                if desc.__get__(p, t) is c:
                    return '.' + name
            except Exception:
                pass
    return '?'


_pg_EDGE_ATTRS = ('__closure__', 'cell_contents', 'gi_frame', '__defaults__', '__globals__', '__self__', '__func__')


def _pg_describe(o):
    t = _pg_cls(o)
    name = _pg_tname(t)
    if t in (dict, list, tuple, set, frozenset):
        return '%s, %d items' % (name, len(o))
    return name


def _pg_steps(chain, state):
    out = []
    for i in range(len(chain)):
        o = chain[i]
        edge = ''
        if i + 1 < len(chain):
            edge = _pg_step_edge(o, chain[i + 1], state)
            if edge == '?' and i + 2 < len(chain) and type(chain[i + 1]) is dict:
                edge = '.__dict__' if _pg_dict_ok(o, chain[i + 1]) else '?'
        out.append({'type': _pg_describe(o), 'edge': edge})
    return out


def _pg_dict_ok(o, d):
    try:
        mro = _pg_tmro.__get__(type(o), type)
    except Exception:
        return False
    for klass in mro:
        desc = type.__dict__['__dict__'].__get__(klass, type).get('__dict__')
        if desc is not None:
            try:
                return type(desc) is _pg_getset and desc.__get__(o, type(o)) is d
            except Exception:
                return False
    return False


def _pg_main():
    gc = _pg_import('gc')
    want = _pg_opts['type']
    limit = _pg_opts['limit']
    match = _pg_type_match(want)
    found = []

    def collect(o):
        if match(o):
            found.append(o)
    stats = {'longest': 0.0, 'complete': True, 'notes': []}
    t0 = _pg_now()
    _pg_walk(gc, collect, {}, {}, _pg_get_ident(), stats)
    collect = None
    total = len(found)
    state = [_pg_now() + _pg_SLICE, stats['longest'], _pg_cpu()]
    roots = _pg_named_roots(gc, state)
    holders = []
    complete = True
    # the instances, and those a holder reaches: bits, not sets of ids
    fbits = {}
    cbits = {}
    fmark = _pg_marker(fbits)
    cmark = _pg_marker(cbits)
    isfound = _pg_tester(fbits)
    iscovered = _pg_tester(cbits)
    for j in range(0, total, _pg_TICK):
        for x in found[j:j + _pg_TICK]:
            fmark(x)
        x = None
        _pg_pause(state)
    ncov = [0]

    def cover(o):
        if cmark(o):
            ncov[0] += 1

    def uncovered(o):
        return isfound(o) and not iscovered(o)
    while len(holders) < limit and ncov[0] < total:
        # a module-level holder first: a function's variable that refers
        # for a moment to what a global holds is not what keeps it
        name, chain = _pg_path_to(gc, roots, uncovered, state, roots[2])
        if chain is None and roots[2] < len(roots[1]):
            name, chain = _pg_path_to(gc, roots, uncovered, state, len(roots[1]))
        if chain is None:
            break
        count, ok = _pg_reaches(gc, chain[0], isfound, cover, state)
        complete = complete and ok
        size, ok = _pg_retained(gc, roots, chain[0], (found, roots, roots[0], roots[1], holders, fbits, cbits, chain, state, stats), state)
        complete = complete and ok
        holders.append({'root': name, 'count': count, 'path': _pg_steps(chain, state), 'retained_size': size})
        chain = None
    uncovered = cover = None
    unheld = 0
    for j in range(0, total, _pg_TICK):
        unheld += len([1 for x in found[j:j + _pg_TICK] if not iscovered(x)])
        _pg_pause(state)
    _pg_drop(found, state)
    fbits.clear()
    cbits.clear()
    roots = None
    return {
        'python': _pg_VERSION,
        'type': want,
        'total': total,
        'holders': holders,
        'unexplained': unheld,
        'complete': stats['complete'] and complete,
        'notes': stats['notes'],
        'elapsed_ms': (_pg_now() - t0) * 1000.0,
        'longest_hold_ms': state[1] * 1000.0,
    }
