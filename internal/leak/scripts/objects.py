# pyglass objects report: census of the objects the garbage collector
# tracks (gc.get_objects), by class: count and total sys.getsizeof.
#
# GIL: gc.get_objects builds its list in one C call that holds the GIL
# (about 15-25 ns per object). From 3.8 on the census asks one generation at
# a time (oldest first, so an object promoted during the census is missed
# rather than counted twice); the lists are then walked in chunks of
# _pg_CHUNK objects with time.sleep(0) between chunks, so other threads run.
_pg_CHUNK = 5000


def _pg_census(objs, counts, sizes, getsizeof):
    n = len(objs)
    i = 0
    while i < n:
        chunk = objs[i:i + _pg_CHUNK]
        i += _pg_CHUNK
        for o in chunk:
            t = type(o)
            if t is _pg_InstanceType:
                t = o.__class__
            try:
                s = getsizeof(o, 0)
            except Exception:
                s = 0
            c = counts.get(t)
            if c is None:
                counts[t] = 1
                sizes[t] = s
            else:
                counts[t] = c + 1
                sizes[t] += s
        o = chunk = None
        _pg_yield()


def _pg_main():
    gc = _pg_import('gc')
    top = _pg_opts['top']
    getsizeof = _pg_sys.getsizeof
    counts = {}
    sizes = {}
    longest = 0.0
    t0 = _pg_now()
    gens = [None]
    if _pg_sys.version_info >= (3, 8):
        gens = [2, 1, 0]
    for gen in gens:
        c0 = _pg_now()
        if gen is None:
            objs = gc.get_objects()
        else:
            objs = gc.get_objects(gen)
        longest = max(longest, _pg_now() - c0)
        _pg_yield()
        try:
            _pg_census(objs, counts, sizes, getsizeof)
        finally:
            objs = None
    merged = {}
    for t in counts:
        name = _pg_tname(t)
        e = merged.get(name)
        if e is None:
            merged[name] = [counts[t], sizes[t]]
        else:
            e[0] += counts[t]
            e[1] += sizes[t]
    counts = sizes = t = None
    rows = sorted(merged.items(), key=lambda kv: (-kv[1][0], kv[0]))
    total = 0
    total_size = 0
    for name, cs in rows:
        total += cs[0]
        total_size += cs[1]
    ntypes = len(rows)
    if top > 0:
        rows = rows[:top]
    return {
        'python': _pg_VERSION,
        'total': total,
        'total_size': total_size,
        'type_count': ntypes,
        'types': [{'type': name, 'count': cs[0], 'size': cs[1]} for name, cs in rows],
        'elapsed_ms': (_pg_now() - t0) * 1000.0,
        'longest_call_ms': longest * 1000.0,
    }
