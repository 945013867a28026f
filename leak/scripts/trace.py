# pyglass trace report: turns tracemalloc on or off, or tells its state.
# Uses the C module _tracemalloc (what tracemalloc.start/stop call), so the
# Python module tracemalloc and its imports are not loaded into the target.
def _pg_main():
    if _pg_PY2:
        return {'error': 'tracemalloc is not available on Python 2.7',
                'kind': 'unsupported', 'python': _pg_VERSION}
    tm = _pg_try_import('_tracemalloc')
    if tm is None:
        return {'error': 'tracemalloc is not available in this Python build',
                'kind': 'unsupported', 'python': _pg_VERSION}
    action = _pg_opts['action']
    frames = _pg_opts['frames']
    was = bool(tm.is_tracing())
    changed = False
    if action == 'start':
        if not was:
            tm.start(frames)
            changed = True
    elif action == 'stop':
        if was:
            changed = True
    elif action != 'status':
        return {'error': 'unknown trace action %r' % (action,), 'kind': 'usage'}
    cur, peak = tm.get_traced_memory()
    doc = {
        'python': _pg_VERSION,
        'action': action,
        'was_tracing': was,
        'changed': changed,
        'traced_current': cur,
        'traced_peak': peak,
        'memory': tm.get_tracemalloc_memory(),
    }
    if action == 'stop' and was:
        tm.stop()
    doc['tracing'] = bool(tm.is_tracing())
    doc['frames'] = tm.get_traceback_limit()
    if action == 'stop' and was:
        doc['memory_after'] = tm.get_tracemalloc_memory()
    return doc
