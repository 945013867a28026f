# Test target for the agent: mimics an injected thread running the
# bootstrap while the main thread keeps printing to its own stdout.
# Usage: target.py seq|par DIR... ; bootstrap i in $PYGLASS_BOOT_<i>.
# It prints READY, then starts the first agent (all of them with par).
#
# The collector is off from the start, so that whatever cyclic garbage the
# agents leave stays until the end, where "GARBAGE total=N ..." reports what
# a collection with gc.DEBUG_SAVEALL finds (it must be nothing). If an agent
# session left its routers in sys._pyglass_test_saved, they are used after
# every session ended and "SAVED ok" (or the error) is printed.
from __future__ import print_function
import gc
import os
import sys
import time
import __main__
try:
    import _thread as threadmod
except ImportError:
    import thread as threadmod


def run_agent(boot, done, i):
    try:
        exec(boot, __main__.__dict__)
    finally:
        done.append(i)


def describe(o):
    t = type(o)
    name = getattr(o, '__qualname__', None) or getattr(o, '__name__', None)
    if isinstance(o, dict):
        name = ','.join(sorted(str(k) for k in list(o)[:6]))
    return '%s.%s:%s' % (getattr(t, '__module__', '?'), t.__name__, name)


def garbage_report():
    """Collects with DEBUG_SAVEALL and describes every object found."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
        del gc.garbage[:]
    finally:
        gc.set_debug(0)
    kinds = {}
    for o in found:
        d = describe(o)
        kinds[d] = kinds.get(d, 0) + 1
    del found
    gc.collect()
    return 'GARBAGE total=%d %s' % (sum(kinds.values()), ' '.join(
        '%s=%d' % kv for kv in sorted(kinds.items())[:40]))


def use_saved():
    saved = getattr(sys, '_pyglass_test_saved', None)
    if saved is None:
        return
    del sys._pyglass_test_saved
    try:
        out, err, buf, inp, hook = saved
        out.write('SAVED stdout\n')
        out.writelines(['SAVED ', 'lines\n'])
        out.flush()
        if buf is not None:
            buf.write(b'SAVED buffer\n')
            buf.flush()
        hook(None)
        err.flush()
        if inp is not None and inp.read() != '':
            raise ValueError('stdin router read something')
        attrs = (out.encoding, err.errors, inp.closed, out.isatty())
        print('SAVED ok %r' % (attrs,))
    except Exception as e:
        print('SAVED error %s: %s' % (type(e).__name__, e))
    sys.stdout.flush()


def warm_up():
    """Imports what the agent and the tests' code import, and formats a
    traceback and a syntax error once: first imports of some standard
    modules leave cyclic garbage of their own (pure Python classes that
    their C versions replace), which is not the agent's."""
    import codecs, json, linecache, time, traceback  # noqa: F401
    try:
        raise ValueError('warm up')
    except ValueError:
        traceback.format_exc()
    try:
        compile('def f(:', '<warm-up>', 'exec')
    except SyntaxError:
        traceback.format_exc()


def threads_left(mode):
    """'ok' once at most this thread and the ending agent's are left (the
    agent's reader thread too is gone) within 2 s, else the count; '-' when
    agents run in parallel."""
    if mode != 'seq':
        return '-'
    for _ in range(200):
        n = len(os.listdir('/proc/self/task'))
        if n <= 2:
            return 'ok'
        time.sleep(0.01)
    return str(n)


def main():
    warm_up()
    gc.collect()
    gc.disable()
    print('READY')
    sys.stdout.flush()
    before = set(__main__.__dict__)
    orig = (sys.stdout, sys.stderr, sys.stdin, sys.displayhook)
    mode = sys.argv[1]
    dirs = sys.argv[2:]
    boots = [os.environ['PYGLASS_BOOT_%d' % i] for i in range(len(dirs))]
    done = []
    reported = []
    started = []

    def launch(i):
        started.append(i)
        threadmod.start_new_thread(run_agent, (boots[i], done, i))

    if mode == 'par':
        for i in range(len(dirs)):
            launch(i)
    else:
        launch(0)
    tick = 0
    deadline = time.time() + 120
    while time.time() < deadline and len(reported) < len(dirs):
        print('tick %d' % tick)
        sys.stdout.flush()
        tick += 1
        for i in list(done):
            if i in reported:
                continue
            reported.append(i)
            added = sorted(set(__main__.__dict__) - before)
            print('REPORT %d added=%s stdout=%s stderr=%s stdin=%s displayhook=%s hub=%s dir=%s stdinclosed=%s threads=%s kept=%s' % (
                i, ','.join(added) or '-',
                sys.stdout is orig[0], sys.stderr is orig[1], sys.stdin is orig[2],
                sys.displayhook is orig[3], hasattr(sys, '_pyglass_hub'),
                os.path.exists(dirs[i]), sys.stdin.closed, threads_left(mode),
                hasattr(sys, '_pyglass_kept')))
            sys.stdout.flush()
            if mode == 'seq' and i + 1 < len(dirs):
                launch(i + 1)
        time.sleep(0.002)
    use_saved()
    print(garbage_report())
    print('END ticks=%d' % tick)
    sys.stdout.flush()


main()
