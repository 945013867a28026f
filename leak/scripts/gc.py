# pyglass gc report: state of the garbage collector. Changes nothing but
# runs a full collection first when asked (_pg_opts['collect']).
def _pg_main():
    gc = _pg_import('gc')
    if _pg_opts['collect']:
        gc.collect()
    flags = gc.get_debug()
    names = []
    for name in sorted(dir(gc)):
        if not name.startswith('DEBUG_') or name == 'DEBUG_LEAK':
            continue
        bit = getattr(gc, name)
        if type(bit) in _pg_ints and bit and flags & bit == bit:
            names.append(name)
    doc = {
        'python': _pg_VERSION,
        'enabled': bool(gc.isenabled()),
        'thresholds': list(gc.get_threshold()),
        'counts': list(gc.get_count()),
        'flags': names,
        'flag_bits': flags,
        'garbage_len': len(gc.garbage),
        'stats': None,
        'frozen': None,
    }
    if hasattr(gc, 'get_stats'):
        stats = []
        gen = 0
        for st in gc.get_stats()[:16]:
            stats.append({
                'generation': gen,
                'collections': st.get('collections', 0),
                'collected': st.get('collected', 0),
                'uncollectable': st.get('uncollectable', 0),
            })
            gen += 1
        doc['stats'] = stats
    if hasattr(gc, 'get_freeze_count'):
        doc['frozen'] = gc.get_freeze_count()
    return doc
