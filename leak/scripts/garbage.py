# pyglass garbage report: the objects in gc.garbage, by class.
#
# Options (_pg_opts): collect (run gc.collect() first), saveall (set
# gc.DEBUG_SAVEALL for one collection, report what it saved, take exactly
# those objects out of gc.garbage again, restore the flags and, if it saved
# anything, collect again so they are freed), limit (example reprs per
# class).
#
# Retained size, the definition implemented:
#   S is the graph of objects reachable from the reported garbage through
#   gc.get_referents, not entering modules, module dicts and sys.modules
#   (at most _pg_NODE_BUDGET objects). An object of S is "alive" when it
#   has references from outside S (its refcount minus the references from
#   S, from gc.garbage and from this script) or is reachable from such an
#   object. retained(class C) = the sizes of C's garbage objects + the
#   sizes of the objects of S that are not alive and are reachable from C's
#   garbage objects without passing through other classes' garbage
#   objects, and from no other class's garbage objects that way; each
#   object counts once, and what two classes keep alive together counts
#   for neither. One exception: before 3.11, DEBUG_SAVEALL also saves the
#   __dict__ of each saved instance; such a dict counts in its instance's
#   retained size (on 3.11+ it is part of the instance) and still has its
#   own 'dict' row. The report's total retained size is the size of the
#   union: every reported object once plus every object of S that is not
#   alive. When S had to be cut at the budget, sizes are lower bounds and
#   'retained_exact' is false.
_pg_NODE_BUDGET = 200000
_pg_CYCLE_BUDGET = 5000
_pg_CYCLE_TYPES = 50
_pg_TRACE_OBJECTS = 5000
_pg_ATTRS = ('__dict__', '__closure__', '__globals__', '__defaults__',
             '__kwdefaults__', '__code__', 'cell_contents', '__func__',
             '__self__', 'f_back', 'f_code', 'f_globals', 'gi_frame',
             'cr_frame', 'ag_frame', 'tb_frame', 'tb_next', '__cause__',
             '__context__', '__traceback__', 'args')


def _pg_prune_ids():
    """ids of the objects S does not enter (the program's module graph)."""
    ids = set()
    mods = _pg_sys.modules
    ids.add(id(mods))
    for m in list(mods.values()):
        if type(m) is _pg_ModuleType:
            ids.add(id(m))
            try:
                ids.add(id(m.__dict__))
            except Exception:
                pass
    return ids


def _pg_retained(objs, keys, groups, gc):
    """Retained sizes per group (see the file header); also returns S."""
    getref = gc.get_referents
    nodes = []
    index = {}
    owner = []
    exact = True
    for gi in range(len(keys)):
        for i in groups[keys[gi]]:
            o = objs[i]
            if id(o) in index:
                continue
            index[id(o)] = len(nodes)
            nodes.append(o)
            owner.append(gi)
    o = None
    nroots = len(nodes)
    prune = _pg_prune_ids()
    edges = []
    j = 0
    while j < len(nodes):
        if j % 2000 == 0:
            _pg_yield()
        p = nodes[j]
        j += 1
        if id(p) in prune or type(p) is _pg_ModuleType:
            edges.append(None)
            continue
        kids = []
        for c in getref(p):
            k = index.get(id(c))
            if k is None:
                if len(nodes) >= _pg_NODE_BUDGET:
                    exact = False
                    continue
                k = len(nodes)
                index[id(c)] = k
                nodes.append(c)
                owner.append(-1)
            kids.append(k)
        edges.append(kids)
    p = c = None
    n = len(nodes)
    # references from inside S, from gc.garbage and from objs
    inner = [0] * n
    for kids in edges:
        if kids:
            for k in kids:
                inner[k] += 1
    kids = None
    for lst in (gc.garbage, objs):
        for o in lst:
            k = index.get(id(o))
            if k is not None:
                inner[k] += 1
    o = lst = None
    for key in keys:  # keys and groups hold one reference each to a class
        k = index.get(id(key))
        if k is not None:
            inner[k] += 2
    key = None
    getrc = _pg_sys.getrefcount
    cal = [[]]
    base = getrc(cal[0])  # nodes' own reference + the call's argument
    cal = None
    alive = [False] * n
    stack = []
    for j in range(n):
        if getrc(nodes[j]) - base - inner[j] > 0:
            alive[j] = True
            stack.append(j)
    while stack:
        kids = edges[stack.pop()]
        if kids:
            for k in kids:
                if not alive[k]:
                    alive[k] = True
                    stack.append(k)
    # Before 3.11 DEBUG_SAVEALL also saves the instances' __dict__s: count
    # such a dict with its instance's group (on 3.11+ it is part of the
    # instance), although its own row still lists it.
    group = owner[:]
    if _pg_sys.version_info < (3, 11):
        for j in range(nroots):
            if type(nodes[j]) is dict:
                continue
            d = _pg_dict_of(nodes[j])
            k = None if d is None else index.get(id(d))
            if k is not None and k < nroots and type(nodes[k]) is dict:
                group[k] = owner[j]
        d = None
    # label what each group reaches: its index, or -2 when shared
    label = [-1] * n
    for j in range(nroots):
        label[j] = group[j]
        stack.append(j)
    while stack:
        j = stack.pop()
        lab = label[j]
        kids = edges[j]
        if not kids:
            continue
        for k in kids:
            if alive[k] or label[k] == lab or label[k] == -2:
                continue
            if group[k] >= 0 and group[k] != lab:
                continue  # another group's garbage object: not entered
            label[k] = lab if label[k] == -1 else -2
            stack.append(k)
    extra = [0] * len(keys)
    total = 0
    for j in range(n):
        if alive[j] or label[j] == -1 or owner[j] >= 0 and owner[j] == label[j]:
            continue
        try:
            size = _pg_sys.getsizeof(nodes[j], 0)
        except Exception:
            size = 0
        if label[j] >= 0:
            extra[label[j]] += size
        if owner[j] < 0:
            total += size
    return extra, total, exact, nodes, index, edges, prune


def _pg_dict_of(p):
    """The __dict__ of p through the C descriptor, or None."""
    t = type(p)
    if _pg_PY2 and t is _pg_InstanceType:
        return p.__dict__
    try:
        mro = _pg_tmro.__get__(t, type)
    except Exception:
        return None
    for klass in mro:
        d = klass.__dict__.get('__dict__')
        if d is not None:
            if type(d) is _pg_getset:
                try:
                    v = d.__get__(p, t)
                except Exception:
                    return None
                return v if type(v) is dict else None
            return None
    return None


def _pg_edge(p, c):
    """Names the reference from p to c: '.attr', '[index]', '[key]'."""
    t = type(p)
    if t is dict:
        i = 0
        for k in p:
            i += 1
            if i > 100000:
                break
            if k is c:
                return '<key>'
            if p[k] is c:
                return '[' + _pg_srepr(k, 2) + ']'
        return '?'
    if t is list or t is tuple:
        return _pg_seq_edge(p, c, 100000)
    if t is set or t is frozenset:
        return '<member>'
    d = _pg_dict_of(p)
    if d is not None:
        if d is c:
            return '.__dict__'
        for k in list(d)[:10000]:
            if d.get(k) is c:
                return '.' + str(k) if type(k) in _pg_strs else '[' + _pg_srepr(k, 2) + ']'
    if _pg_PY2 and t is _pg_InstanceType:
        if p.__class__ is c:
            return '.__class__'
        return '?'
    if c is t:
        return '.__class__'
    try:
        mro = _pg_tmro.__get__(t, type)
    except Exception:
        return '?'
    for klass in mro[:64]:
        for name, desc in list(klass.__dict__.items())[:1000]:
            dt = type(desc)
            if dt is not _pg_member and not (dt is _pg_getset and name in _pg_ATTRS):
                continue
            try:
                v = desc.__get__(p, t)
            except Exception:
                continue
            if v is c:
                return '.' + name
    return '?'


def _pg_cycle(start, gc, prune):
    """Shortest reference path from start back to start, as steps."""
    getref = gc.get_referents
    is_tracked = gc.is_tracked
    sid = id(start)
    parent = {sid: None}
    keep = [start]
    queue = [start]
    qi = 0
    end = None
    while qi < len(queue) and end is None:
        p = queue[qi]
        qi += 1
        if id(p) in prune or type(p) is _pg_ModuleType:
            continue
        for c in getref(p):
            if c is start:
                end = p
                break
            cid = id(c)
            if cid in parent or not is_tracked(c) or len(keep) >= _pg_CYCLE_BUDGET:
                continue
            parent[cid] = p
            keep.append(c)
            queue.append(c)
    p = c = None
    if end is None:
        return None
    path = [start]
    cur = end
    while cur is not start and len(path) < 1000:
        path.insert(1, cur)
        cur = parent[id(cur)]
    path.append(start)
    steps = []
    for i in range(len(path) - 1):
        a = path[i]
        steps.append([a, _pg_edge(a, path[i + 1])])
    # fold instance -> .__dict__ -> dict -> ['name'] into .name
    out = []
    i = 0
    while i < len(steps):
        a, e = steps[i]
        if e == '.__dict__' and i + 1 < len(steps):
            nxt = steps[i + 1][1]
            if nxt.startswith("['") and nxt.endswith("']"):
                e = '.' + nxt[2:-2]
                i += 1
            elif nxt.startswith("[u'") and nxt.endswith("']"):
                e = '.' + nxt[3:-2]
                i += 1
        t = _pg_cls(a)
        out.append({'type': _pg_tname(t), 'name': _pg_tname(t, False),
                    'container': type(a) in _pg_CONTAINERS, 'edge': e})
        i += 1
    path = steps = keep = queue = parent = a = cur = end = None
    return out


def _pg_creation(objs, idxs, tm):
    """Most frequent allocation lines of the objects (tracemalloc)."""
    lines = {}
    for i in idxs[:_pg_TRACE_OBJECTS]:
        try:
            tb = tm._get_object_traceback(objs[i])
        except Exception:
            tb = None
        if not tb:
            continue
        fr = tb[0]
        if type(fr) is tuple and len(fr) >= 2:
            key = (fr[0], fr[1])
            lines[key] = lines.get(key, 0) + 1
    rows = sorted(lines.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return [{'file': k[0], 'line': k[1], 'count': n} for k, n in rows]


def _pg_analyze(objs, limit, gc, tm):
    groups = {}
    for i in range(len(objs)):
        if i % 10000 == 9999:
            _pg_yield()
        k = _pg_cls(objs[i])
        g = groups.get(k)
        if g is None:
            groups[k] = g = []
        g.append(i)
    keys = sorted(groups, key=lambda k: -len(groups[k]))
    extra, total, exact, nodes, index, edges, prune = _pg_retained(objs, keys, groups, gc)
    nodes = index = edges = None
    types = []
    shallow_all = 0
    tracing = tm is not None and tm.is_tracing()
    for gi in range(len(keys)):
        idxs = groups[keys[gi]]
        shallow = 0
        for i in idxs:
            try:
                shallow += _pg_sys.getsizeof(objs[i], 0)
            except Exception:
                pass
        row = {
            'type': _pg_tname(keys[gi]),
            'count': len(idxs),
            'shallow_size': shallow,
            'retained_size': shallow + extra[gi],
            'examples': [_pg_srepr(objs[i]) for i in idxs[:limit]],
            'cycle': None,
            'created_at': None,
        }
        shallow_all += shallow
        if gi < _pg_CYCLE_TYPES:
            row['cycle'] = _pg_cycle(objs[idxs[0]], gc, prune)
        if tracing:
            row['created_at'] = _pg_creation(objs, idxs, tm)
        types.append(row)
        _pg_yield()
    groups = keys = None
    return types, shallow_all, shallow_all + total, exact, tracing


def _pg_main():
    gc = _pg_import('gc')
    tm = None
    if not _pg_PY2:
        tm = _pg_try_import('_tracemalloc')
    opts = _pg_opts
    t0 = _pg_now()
    doc = {'python': _pg_VERSION, 'collected': None, 'saveall': bool(opts['saveall']),
           'saved': None}
    flags = gc.get_debug()
    start = 0
    if opts['saveall']:
        start = len(gc.garbage)
        gc.set_debug(flags | gc.DEBUG_SAVEALL)
        try:
            doc['collected'] = gc.collect()
        finally:
            gc.set_debug(flags)
    elif opts['collect']:
        doc['collected'] = gc.collect()
    objs = gc.garbage[start:]
    try:
        if opts['saveall']:
            doc['saved'] = len(objs)
        doc['total'] = len(objs)
        types, shallow, retained, exact, tracing = _pg_analyze(objs, opts['limit'], gc, tm)
        doc['types'] = types
        doc['shallow_size'] = shallow
        doc['retained_size'] = retained
        doc['retained_exact'] = exact
        doc['tracemalloc'] = tracing
        doc['notes'] = []
        if tracing and _pg_sys.version_info[:2] == (3, 11):
            doc['notes'].append('Python 3.11 gives no creation line for objects with a'
                                ' managed __dict__ (CPython gh-101430)')
    finally:
        found = len(objs)
        if opts['saveall'] and found:
            saved = set(id(o) for o in objs)
            gc.garbage[:] = [o for o in gc.garbage if id(o) not in saved]
            saved = o = None
        objs = None
        # What the collection saved is garbage again: free it now (a
        # second full collection), unless it saved nothing.
        if opts['saveall'] and found:
            gc.collect()
    doc['garbage_len'] = len(gc.garbage)
    doc['elapsed_ms'] = (_pg_now() - t0) * 1000.0
    return doc
