# pyglass objects report: a census of live objects by class: count and
# total sys.getsizeof. Only objects the garbage collector tracks are
# counted (containers and instances; not str, int, float), as
# gc.get_objects() would list them.
#
# Two methods (_pg_opts['all']):
#
# walk (default): a depth-first walk from the program's roots through
#   gc.get_referents: sys.modules, the variables of every other thread's
#   running functions (see _pg_thread_refs for 3.11 and 3.12), every
#   class's __dict__ (static types included), gc.garbage and, from 3.8 on,
#   the young generations. Each gc.get_referents call returns the
#   references of one container or of up to _pg_BATCH other objects, so
#   the GIL is never held for long: lists, tuples, dicts,
#   sets, frozensets and deques (subclasses too) larger than _pg_BIG are
#   entered _pg_BIG items at a time through the builtin class's own
#   methods, and every _pg_SLICE seconds the walk sleeps briefly so the
#   target's threads run.
#   Visited objects are marked in a bitmap (one bit per 16 bytes of
#   address space, 8 KiB per MiB of heap, in 512-byte pages), so the walk
#   costs the target little memory. It misses what only C code references
#   or what nothing references any more (cycles waiting for the collector),
#   typically a few hundred objects, and, as the heap changes under it, may
#   miss objects moved from a part not yet walked to one already walked.
#
# all: gc.get_objects(), one C call that lists every tracked object and
#   holds the GIL while it does (about 15-60 ns per object). From 3.8 on it
#   is asked one generation at a time, oldest first.
_pg_BIG = 4096
_pg_BATCH = 64
_pg_SLICE = 0.002
_pg_MAX_VISITS = 200000000


def _pg_counter(counts, sizes):
    """A function that counts one object into counts and sizes (by class)."""
    getsizeof = _pg_sys.getsizeof
    old = _pg_InstanceType

    def add(o):
        t = type(o)
        if t is old:
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
    return add


def _pg_classes():
    """Every class reachable through type.__subclasses__ (bounded)."""
    sub = type.__dict__['__subclasses__']
    out = [object]
    seen = set([id(object)])
    i = 0
    while i < len(out) and len(out) < 200000:
        try:
            kids = sub(out[i])
        except Exception:
            kids = ()
        i += 1
        for k in kids:
            if id(k) not in seen:
                seen.add(id(k))
                out.append(k)
    return out


def _pg_function_frames(frames, own):
    """Whether another thread than own runs a function (not only module
    code, whose variables are its module's, nor pyglass's agent)."""
    for tid, f in frames.items():
        depth = 0
        while tid != own and f is not None and depth < 10000:
            co = f.f_code
            if co.co_flags & 0x2 and not co.co_filename.startswith('<pyglass'):
                return True  # CO_NEWLOCALS
            f = f.f_back
            depth += 1
    return False


def _pg_thread_refs(gc, own, roots, notes):
    """Adds to roots what the other threads' running functions reference.

    Running frames are not tracked by the collector and, from 3.11 on,
    gc.get_referents does not see their variables: before 3.11 the frames'
    referents are taken, from 3.13 on their f_locals (a view, PEP 667).
    On 3.11 and 3.12 f_locals would store a snapshot dict in the frame,
    keeping its objects alive after the function drops them: the
    variables are not read there."""
    getframes = getattr(_pg_sys, '_current_frames', None)
    if getframes is None:
        return
    if getattr(_pg_sys, '_pyglass_stale_threads', False):
        # (set by pyglass's agent: see STALE_NAME there)
        notes.append('this process was forked without Python\'s after-fork code (a uwsgi worker without'
                     ' py-call-osafterfork): other threads\' running functions are not read, as'
                     ' sys._current_frames() would crash it')
        return
    v = _pg_sys.version_info[:2]
    if (3, 11) <= v < (3, 13):
        if _pg_function_frames(getframes(), own):
            notes.append('Python %d.%d: the local variables of other threads\' running functions'
                         ' cannot be read without side effects; objects only they reference are'
                         ' counted while in the young generations (--all counts them)' % v)
        return
    getref = gc.get_referents
    for tid, f in getframes().items():
        if tid == own:
            continue
        depth = 0
        while f is not None and depth < 10000:
            try:
                if v >= (3, 13):
                    roots.extend(f.f_locals.values())
                else:
                    roots.extend(getref(f))
            except Exception:
                pass
            f = f.f_back
            depth += 1
    f = None


def _pg_roots(gc, own, notes):
    """The walk's starting points."""
    roots = [_pg_sys.modules, gc.garbage]
    _pg_thread_refs(gc, own, roots, notes)
    tdict = type.__dict__['__dict__']
    getref = gc.get_referents
    for c in _pg_classes():
        roots.append(c)
        try:
            roots.extend(getref(tdict.__get__(c, type)))
        except Exception:
            pass
    c = None
    if _pg_sys.version_info >= (3, 8):
        gens = (0, 1)
        if _pg_sys.version_info >= (3, 14):
            gens = (0,)  # the young generation; 1 and 2 are the old spaces
        # Left out: roots itself and frames (this thread's own would hold
        # roots: cycles).
        ftype = type(_pg_sys._getframe())
        for g in gens:
            for o in gc.get_objects(g):
                if type(o) is not ftype and o is not roots:
                    roots.append(o)
        o = None
    return roots


def _pg_containers():
    """The builtin containers a walk enters piecewise: (class, len, how to
    take items), the methods taken from the class itself so that a
    subclass's own __len__, __getitem__ or __iter__ is never called."""
    out = [(list, list.__len__, list.__getitem__), (tuple, tuple.__len__, tuple.__getitem__),
           (dict, dict.__len__, getattr(dict, 'iteritems', dict.items)),
           (set, set.__len__, set.__iter__),
           (frozenset, frozenset.__len__, frozenset.__iter__)]
    coll = _pg_try_import('_collections')
    if coll is not None and hasattr(coll, 'deque'):
        d = coll.deque
        out.append((d, d.__len__, d.__iter__))
    return out


def _pg_subclass_refs(o, t):
    """What an instance of a subclass of a builtin container references
    besides its items: its class, its __dict__ and its __slots__' values,
    read through the C descriptors (never the class's own code)."""
    out = [t]
    tdict = type.__dict__['__dict__']
    try:
        mro = _pg_tmro.__get__(t, type)
    except Exception:
        return out
    dict_done = False
    for c in mro:
        try:
            d = tdict.__get__(c, type)
        except Exception:
            continue
        for name in list(d.keys()):
            desc = d.get(name)
            dt = type(desc)
            if dt is _pg_getset and name == '__dict__' and not dict_done:
                dict_done = True
            elif dt is not _pg_member:
                continue
            try:
                out.append(desc.__get__(o, t))
            except Exception:
                pass
    return out


def _pg_marker(seen):
    """A function that marks an object visited in the bitmap pages of seen
    and tells whether it was not marked before."""
    def mark(o):
        # 512-byte pages (64 KiB of address space each): small enough for
        # the interpreter's own allocator, whose arenas are reused.
        a = id(o) >> 4
        b = seen.get(a >> 12)
        if b is None:
            b = seen[a >> 12] = bytearray(512)
        i = (a & 0xfff) >> 3
        m = 1 << (a & 7)
        if b[i] & m:
            return False
        b[i] |= m
        return True
    return mark


def _pg_walk(gc, add, counts, sizes, own, stats, every=False):
    """Counts with add (into counts and sizes) the objects reachable from
    _pg_roots: those the collector tracks, and with every also the
    untracked objects they reference (str, bytes, int...), each once."""
    getref = gc.get_referents
    tracked = gc.is_tracked
    islice = _pg_import('itertools').islice
    sleep = _pg_sleep
    now = _pg_time.time
    cpu = _pg_cpu
    BIG = _pg_BIG
    containers = _pg_containers()
    kinds = {}  # class -> (index in containers, its len), or None
    seen = {}
    stack = []
    slices = []
    batch = []

    if every:
        # untracked objects are counted in the loop (so its pauses
        # apply); only dicts and tuples among them are entered
        push = stack.extend
    else:
        def push(objs):
            stack.extend(filter(tracked, objs))

    mark = _pg_marker(seen)

    # Allocations made in a short function: with tracemalloc on, each
    # allocation scans its function's line table up to the allocating
    # instruction, and this loop is deep in a long function.
    def enter(o):
        push(getref(o))

    def enter_batch():
        push(getref(*batch))
        del batch[:]

    # The walk's own objects are not the program's.
    for o in (seen, stack, slices, batch, stats, _pg_opts, counts, sizes, kinds, containers):
        mark(o)
    for fn in (add, mark, enter, enter_batch) + ((push,) if not every else ()):
        mark(fn)
        mark(fn.__closure__)
        for o in fn.__closure__:
            mark(o)
    roots = _pg_roots(gc, own, stats['notes'])
    mark(roots)
    push(roots)
    roots = None
    t_yield = now() + _pg_SLICE
    t_run = cpu()
    # visits is counted period at a time: an int above 256 is a new object
    # at each increment, and with tracemalloc on every allocation made
    # in this long function's frame costs a scan of its line table
    # (tracemalloc computes the allocating line): that was 40 % of the
    # target's CPU during a census with tracemalloc on.
    visits = 0
    # With every (trace top), an object costs more (its traceback, and
    # the strings and numbers are visited too): the clock is read every 64,
    # which brought the runs' 99th percentile from 4 ms to 2.5 ms (the
    # census's) on the 1M heap with tracemalloc on.
    period = 64 if every else 256
    tick = period
    while visits < _pg_MAX_VISITS:
        if not stack:
            if batch:
                # one gc.get_referents call for up to _pg_BATCH objects
                enter_batch()
                continue
            if not slices:
                break
            # s: [container, index or None, iterator or getitem, end, pairs]
            s = slices[-1]
            o = s[0]
            if s[1] is not None:
                chunk = s[2](o, slice(s[1], min(s[1] + BIG, s[3])))
                s[1] += BIG
                if s[1] >= s[3]:
                    slices.pop()
            else:
                try:
                    chunk = list(islice(s[2], BIG))
                except RuntimeError:
                    # changed size while entered: take the rest at once
                    chunk = getref(o)
                    s[4] = False
                    slices.pop()
                else:
                    if len(chunk) < BIG:
                        slices.pop()
                if s[4]:
                    flat = []
                    for kv in chunk:
                        flat.extend(kv)
                    chunk = flat
                    flat = None
            push(chunk)
            s = o = chunk = None
            continue
        o = stack.pop()
        tick -= 1
        if tick == 0 and now() > t_yield:
            stats['longest'] = max(stats['longest'], cpu() - t_run)
            sleep(0.0001)
            t_run = cpu()
            t_yield = now() + _pg_SLICE
        if tick == 0:
            tick = period
            visits += period
        if not mark(o):
            continue
        add(o)
        t = type(o)
        if every and t is not dict and t is not tuple and not tracked(o):
            # (a dict or tuple the collector stopped tracking because it
            # holds only untracked objects is entered: they are counted)
            continue
        kk = kinds.get(t, 0)
        if kk == 0:
            kk = None
            for j in range(len(containers)):
                if issubclass(t, containers[j][0]):
                    # the builtin len for the class itself, its base's
                    # for a subclass (whose __len__ may be Python code)
                    kk = (j, len if t is containers[j][0] else containers[j][1])
                    break
            kinds[t] = kk
        if kk is not None and kk[1](o) > BIG:
            base, size, items = containers[kk[0]]  # 0, 1: list, tuple
            if t is not base:
                push(_pg_subclass_refs(o, t))
            if kk[0] < 2:
                slices.append([o, 0, items, size(o), False])
            else:
                slices.append([o, None, iter(items(o)), 0, base is dict])
        elif kk is not None:
            enter(o)
        else:
            # instances, functions, frames...: few references each, so
            # up to _pg_BATCH of them share one gc.get_referents call
            batch.append(o)
            if len(batch) >= _pg_BATCH:
                enter_batch()
    o = None
    stats['longest'] = max(stats['longest'], cpu() - t_run)
    stats['complete'] = not stack and not slices and not batch
    del batch[:]
    del stack[:]
    del slices[:]
    seen.clear()


def _pg_census(objs, add):
    n = len(objs)
    i = 0
    while i < n:
        chunk = objs[i:i + _pg_BIG]
        i += _pg_BIG
        for o in chunk:
            add(o)
        o = chunk = None
        _pg_yield()


def _pg_gc_census(gc, add, stats):
    gens = [None]
    if _pg_sys.version_info >= (3, 8):
        gens = [2, 1, 0]
    for gen in gens:
        c0 = _pg_now()
        if gen is None:
            objs = gc.get_objects()
        else:
            objs = gc.get_objects(gen)
        stats['longest'] = max(stats['longest'], _pg_now() - c0)
        _pg_yield()
        try:
            _pg_census(objs, add)
        finally:
            objs = None


def _pg_main():
    gc = _pg_import('gc')
    top = _pg_opts['top']
    counts = {}
    sizes = {}
    add = _pg_counter(counts, sizes)
    stats = {'longest': 0.0, 'complete': True, 'notes': []}
    t0 = _pg_now()
    if _pg_opts['all'] or _pg_time is None:
        method = 'gc'
        _pg_gc_census(gc, add, stats)
    else:
        method = 'walk'
        _pg_walk(gc, add, counts, sizes, _pg_get_ident(), stats)
    add = None
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
        'method': method,
        'complete': stats['complete'],
        'total': total,
        'total_size': total_size,
        'type_count': ntypes,
        'types': [{'type': name, 'count': cs[0], 'size': cs[1]} for name, cs in rows],
        'elapsed_ms': (_pg_now() - t0) * 1000.0,
        'longest_hold_ms': stats['longest'] * 1000.0,
        'notes': stats['notes'],
    }
