# pyglass trace top: what tracemalloc says about the live allocations,
# grouped by the line, the file or the whole traceback that made them
# (size and count), like tracemalloc.Snapshot.statistics, without
# importing the Python module tracemalloc (only its C module
# _tracemalloc). Concatenated after objects.py, whose walk it reuses.
#
# If tracemalloc is not tracing, it is started with _pg_opts['frames']
# frames and the report says so (nothing allocated before is traced);
# `pyglass trace stop` stops it.
#
# Two methods (_pg_opts['exact']):
#
# walk (default; 'at' is when it starts): objects.py's walk from the program's roots, in small
#   steps, also visiting the untracked objects (str, bytes...) that
#   containers reference; each object found is asked for its traceback
#   (_tracemalloc._get_object_traceback) and counted with sys.getsizeof.
#   An estimate: memory that is not an object (a list's item array grown
#   by later appends, a dict's table) is counted where its object was
#   created, and what the walk cannot reach (see objects.py) is missed.
#   The GIL is never held for long.
#
# exact: _tracemalloc._get_traces(), every traced block exactly, in one C
#   call that copies tracemalloc's table and builds a tuple per block
#   while holding the GIL (2-5 us per block: 4-8 s for 2 million);
#   its duration is reported as longest_hold_ms. Grouping then runs in
#   small steps. Blocks allocated by pyglass's own code (file names
#   starting with '<pyglass') are left out.
_pg_STEP = 2048
_pg_MAX_GROUPS = 20000


def _pg_own(tb):
    for fr in tb:
        f = fr[0]
        if type(f) in _pg_strs and f.startswith('<pyglass'):
            return True
    return False


def _pg_grouper(by, groups, acc):
    """A function that counts one block (its traceback and size) into
    groups; acc is [untraced count, untraced size, own size]."""
    def add(tb, size):
        if not tb:
            acc[0] += 1
            acc[1] += size
            return
        if _pg_own(tb):
            acc[2] += size
            return
        if by == 'line':
            key = tb[0]
        elif by == 'file':
            key = tb[0][0]
        else:
            key = tb
        g = groups.get(key)
        if g is None:
            groups[key] = [size, 1]
        else:
            g[0] += size
            g[1] += 1
    return add


def _pg_exact(tm, add, stats):
    h0 = _pg_now()
    traces = tm._get_traces()
    stats['at'] = h1 = _pg_now()
    stats['longest'] = h1 - h0
    n = len(traces)
    last = h1
    i = 0
    while i < n:
        for tr in traces[i:i + _pg_STEP]:
            if len(tr) == 2:
                add(tr[1], tr[0])
            else:
                add(tr[2], tr[1])
        i += _pg_STEP
        if _pg_now() - last > _pg_SLICE:
            _pg_yield()
            last = _pg_now()
    tr = traces = None
    return n


def _pg_walked(tm, add, stats):
    gc = _pg_import('gc')
    gettb = tm._get_object_traceback
    getsizeof = _pg_sys.getsizeof
    n = [0]
    stats['at'] = _pg_now()

    def count(o):
        try:
            s = getsizeof(o, 0)
        except Exception:
            s = 0
        tb = gettb(o)
        if tb:
            n[0] += 1
        add(tb, s)
    _pg_walk(gc, count, {}, {}, _pg_get_ident(), stats, True)
    count = None
    if _pg_sys.version_info[:2] == (3, 11):
        stats['notes'].append('Python 3.11: tracemalloc cannot tell where instances of Python classes'
                              ' were allocated (a CPython bug fixed in 3.12): they count as untraced'
                              ' here; --exact counts their memory')
    return n[0]


def _pg_main():
    if _pg_PY2:
        return {'error': 'tracemalloc is not available on Python 2.7',
                'kind': 'unsupported', 'python': _pg_VERSION}
    tm = _pg_try_import('_tracemalloc')
    if tm is None or not hasattr(tm, '_get_traces'):
        return {'error': 'tracemalloc is not available in this Python build',
                'kind': 'unsupported', 'python': _pg_VERSION}
    by = _pg_opts['by']
    if by not in ('line', 'file', 'traceback'):
        return {'error': 'unknown grouping %r (line, file or traceback)' % (by,), 'kind': 'usage'}
    t0 = _pg_now()
    started = False
    if not tm.is_tracing():
        tm.start(_pg_opts['frames'])
        started = True
    groups = {}
    acc = [0, 0, 0]
    add = _pg_grouper(by, groups, acc)
    stats = {'longest': 0.0, 'complete': True, 'notes': [], 'at': _pg_now()}
    n = 0
    method = 'exact' if _pg_opts['exact'] else 'walk'
    if started:
        pass  # nothing allocated before is traced: nothing to read
    elif method == 'exact' or _pg_time is None:
        method = 'exact'
        n = _pg_exact(tm, add, stats)
    else:
        n = _pg_walked(tm, add, stats)
    add = None
    cur, peak = tm.get_traced_memory()
    rows = []
    for key in groups:
        g = groups[key]
        rows.append((g[0], g[1], key))
    groups = None
    ngroups = len(rows)
    rows.sort(key=lambda r: r[0], reverse=True)
    truncated = ngroups > _pg_MAX_GROUPS
    out = []
    for size, count, key in rows[:_pg_MAX_GROUPS]:
        if by == 'line':
            frames = [{'file': key[0], 'line': key[1]}]
        elif by == 'file':
            frames = [{'file': key, 'line': 0}]
        else:
            frames = [{'file': f[0], 'line': f[1]} for f in key]
        out.append({'size': size, 'count': count, 'frames': frames})
    rows = None
    return {
        'python': _pg_VERSION,
        'method': method,
        'complete': stats['complete'],
        'notes': stats['notes'],
        'by': by,
        'started': started,
        'frames': tm.get_traceback_limit(),
        'traces': n,
        'untraced': acc[0],
        'untraced_size': acc[1],
        'traced_current': cur,
        'traced_peak': peak,
        'own_size': acc[2],
        'memory': tm.get_tracemalloc_memory(),
        'groups': out,
        'group_count': ngroups,
        'truncated': truncated,
        'longest_hold_ms': stats['longest'] * 1000.0,
        'elapsed_ms': (_pg_now() - t0) * 1000.0,
        'at': stats['at'],
    }
