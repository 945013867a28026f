# Test harness for the leak reports: a real interpreter that runs report
# scripts the way pyglass's exec does (on a fresh thread, with
# exec(source, {'__name__': '__pyglass__', '__builtins__': builtins}), its
# stdout captured), driven by JSON lines on stdin:
#   {"op": "run", "src": SOURCE}  -> {"out": captured stdout}
#   {"op": "exec", "code": SRC}   -> {"result": value of `result`}
# Every reply is one JSON line on the real stdout. The harness is passed
# with -c, so it needs no file in the interpreter's file system (a chroot).
import gc
import json
import os
import sys
import threading
import time
import traceback

try:
    import builtins
except ImportError:
    import __builtin__ as builtins

try:
    import tracemalloc
except ImportError:
    tracemalloc = None


class Capture(object):
    def __init__(self):
        self.parts = []

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass


CAPTURE = Capture()
REAL_STDOUT = sys.stdout


def run_script(src):
    """Runs a report source like pyglass exec and returns its stdout."""
    code = compile(src, '<pyglass>', 'exec')
    del CAPTURE.parts[:]
    err = []

    def target():
        sys.stdout = CAPTURE
        try:
            exec(code, {'__name__': '__pyglass__', '__builtins__': builtins})
        except BaseException:
            err.append(traceback.format_exc())
        finally:
            sys.stdout = REAL_STDOUT

    tasks = task_count()
    t = threading.Thread(target=target)
    t.start()
    t.join()
    # join returns before the OS thread has exited: wait for it (bounded)
    for i in range(2000):
        if task_count() <= tasks:
            break
        time.sleep(0.001)
    out = ''.join(CAPTURE.parts)
    del CAPTURE.parts[:]
    if err:
        raise RuntimeError('script raised: ' + err[0])
    return out


def rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return -1


def task_count():
    return len(os.listdir('/proc/self/task'))


def tracing():
    if tracemalloc is None:
        return None
    return tracemalloc.is_tracing()


def snapshot(objs=()):
    """What a report must leave as it found it."""
    return {
        'modules': sorted(sys.modules),
        'debug': gc.get_debug(),
        'enabled': gc.isenabled(),
        'threshold': list(gc.get_threshold()),
        'garbage': len(gc.garbage),
        'tracing': tracing(),
        'threads': threading.active_count(),
        'tasks': task_count(),
        'refcounts': [sys.getrefcount(o) for o in objs],
    }


class Heartbeat(object):
    """A thread that wakes every millisecond and records its longest gap."""

    def __init__(self):
        self.stop = False
        self.gap = 0.0
        self.thread = threading.Thread(target=self.run)
        self.thread.daemon = True
        self.thread.start()

    def run(self):
        last = time.time()
        while not self.stop:
            time.sleep(0.001)
            now = time.time()
            if now - last > self.gap:
                self.gap = now - last
            last = now

    def finish(self):
        self.stop = True
        self.thread.join()
        return self.gap


G = {'run_script': run_script, 'snapshot': snapshot,
     'rss_kib': rss_kib, 'task_count': task_count, 'Heartbeat': Heartbeat,
     'gc': gc, 'sys': sys, 'time': time, 'threading': threading,
     'tracemalloc': tracemalloc, '__name__': '__main__'}


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        req = json.loads(line)
        try:
            if req['op'] == 'run':
                rep = {'out': run_script(req['src'])}
            else:
                G.pop('result', None)
                exec(compile(req['code'], req.get('name', '<test>'), 'exec'), G)
                rep = {'result': G.get('result')}
        except BaseException:
            rep = {'error': traceback.format_exc()}
            if hasattr(sys, 'exc_clear'):
                sys.exc_clear()
        REAL_STDOUT.write(json.dumps(rep) + '\n')
        REAL_STDOUT.flush()


main()
