# pyglass objects --paths TYPE: who keeps the instances of TYPE alive.
# Concatenated after objects.py (its walk finds the instances). Then, up to
# _pg_opts['limit'] times: take an instance no holder found so far reaches,
# find the shortest reference path to it from a named root (a module
# global, a class attribute, gc.garbage) by a breadth-first search, and
# count the instances that root reaches (a depth-first walk). Every search
# is bounded (_pg_PATH_BUDGET visits) and pauses every _pg_SLICE seconds.
# Edges are named from the builtin containers' own items, an instance's
# __dict__ read through the C descriptor, or '?'; no code of the target's
# classes runs.
_pg_PATH_BUDGET = 3000000


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
    """(name, object) for every module global and class attribute, and
    gc.garbage."""
    mdict = _pg_ModuleType.__dict__['__dict__']
    tdict = type.__dict__['__dict__']
    out = [('gc.garbage', gc.garbage)]
    for mname, mod in sorted(list(_pg_sys.modules.items()), key=lambda kv: str(kv[0])):
        if type(mod) is not _pg_ModuleType:
            continue
        try:
            d = mdict.__get__(mod, _pg_ModuleType)
        except Exception:
            continue
        _pg_pause(state)
        for k, v in list(dict.items(d)):
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
                        out.append(('%s.%s' % (name, ck), cv))
            out.append((name, v))
    return out


def _pg_pause(state):
    if _pg_now() > state[0]:
        t = _pg_now()
        state[1] = max(state[1], t - state[2])
        _pg_sleep(0.0001)
        state[2] = _pg_now()
        state[0] = state[2] + _pg_SLICE


def _pg_reaches(gc, root, match, state):
    """The ids of the instances reachable from root (bounded), and whether
    the walk finished."""
    found = set()
    seen = {}
    mark = _pg_marker(seen)
    mark(root)

    def add(c):
        if match(c):
            found.add(id(c))
    add(root)
    done = _pg_dfs(gc, [root], mark, state, add)
    seen.clear()
    return found, done


def _pg_dfs(gc, stack, mark, state, add):
    """Walks depth-first from the objects on stack into every referent
    mark lets through, calling add (when not None) on each; bounded.
    Returns whether it finished."""
    getref = gc.get_referents
    n = 0
    while stack and n < _pg_PATH_BUDGET:
        o = stack.pop()
        n += 1
        if n & 255 == 0:
            _pg_pause(state)
        k = 0
        for c in getref(o):
            k += 1
            if k & 1023 == 0:
                _pg_pause(state)
            if mark(c):
                if add is not None:
                    add(c)
                stack.append(c)
    done = not stack
    o = c = None
    del stack[:]
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
    for name, o in roots:
        if mark(o):
            stack.append(o)
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


def _pg_path_to(gc, roots, want, state):
    """Shortest path [obj, ...] from a named root to an object for which
    want(o) is true (BFS), with the root's name."""
    getref = gc.get_referents
    parent = {}
    level = []
    names = {}
    for name, o in roots:
        if id(o) not in parent:
            parent[id(o)] = None
            names[id(o)] = name
            level.append(o)
    keep = {}
    n = 0
    while level and n < _pg_PATH_BUDGET:
        nxt = []
        for o in level:
            n += 1
            if n & 255 == 0:
                _pg_pause(state)
            keep[id(o)] = o
            if want(o):
                chain = []
                i = id(o)
                while i is not None:
                    chain.append(keep[i])
                    i = parent[i]
                chain.reverse()
                name = names[id(chain[0])]
                keep.clear()
                parent.clear()
                return name, chain
            k = 0
            for c in getref(o):
                k += 1
                if k & 1023 == 0:
                    _pg_pause(state)
                if id(c) not in parent:
                    parent[id(c)] = id(o)
                    nxt.append(c)
        level = nxt
    keep.clear()
    parent.clear()
    return None, None


def _pg_step_edge(p, c):
    """The reference from p to c: '[3]', "['key']", '.attr', '<key>' or '?'."""
    t = type(p)
    if t is dict or isinstance(p, dict):
        i = 0
        for k, v in dict.items(p):
            if v is c:
                return '[' + _pg_srepr(k, 2) + ']'
            if k is c:
                return '<key>'
            i += 1
            if i > 1000000:
                break
        return '?'
    if t is list or t is tuple:
        return _pg_seq_edge(p, c, 1000000)
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


def _pg_steps(name, chain):
    out = []
    for i in range(len(chain)):
        o = chain[i]
        edge = ''
        if i + 1 < len(chain):
            edge = _pg_step_edge(o, chain[i + 1])
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
    state = [_pg_now() + _pg_SLICE, stats['longest'], _pg_now()]
    roots = _pg_named_roots(gc, state)
    holders = []
    covered = set()
    complete = True
    i = 0
    ids = set()
    for j in range(0, total, 4096):
        ids.update([id(x) for x in found[j:j + 4096]])
        _pg_pause(state)

    def uncovered(o):
        return id(o) in ids and id(o) not in covered
    while len(holders) < limit and len(covered) < total:
        name, chain = _pg_path_to(gc, roots, uncovered, state)
        if chain is None:
            break
        reached, ok = _pg_reaches(gc, chain[0], match, state)
        complete = complete and ok
        covered |= reached
        size, ok = _pg_retained(gc, roots, chain[0], (found, roots, holders, ids, covered, chain, reached, state, stats), state)
        complete = complete and ok
        holders.append({'root': name, 'count': len(reached), 'path': _pg_steps(name, chain), 'retained_size': size})
        chain = None
    uncovered = None
    unheld = 0
    for j in range(0, total, 4096):
        unheld += len([1 for x in found[j:j + 4096] if id(x) not in covered])
        _pg_pause(state)
    del found[:]
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
