# -*- coding: utf-8 -*-
# stacks_zoo.py: threads blocked at known places, for `pyglass stacks` tests
# (Python 2.7 and 3.x).
#
# Every thread blocks forever in a different construct: a lock, Event.wait,
# time.sleep in a generator, a deadlock between two threads, a 500-deep
# recursion, methods (plain, static, class), nested functions, a lambda, a
# decorator, a comprehension, a class body, a coroutine run by asyncio (3.x),
# and a function with a non-ASCII name (3.x) in a file with a non-ASCII path
# run by a thread with a non-ASCII name. One thread has known local variables.
#
# Once every thread is blocked (its stack no longer changes), a helper thread
# named "reporter" records the ground truth with
# traceback.extract_stack(sys._current_frames()[ident]) plus each frame's
# co_qualname (3.11+), prints it as one line "STACKS <json>", then prints
# "READY pid=P" and exits.
import collections
import json
import os
import sys
import threading
import time
import traceback

PY3 = sys.version_info[0] >= 3
FOREVER = threading.Event()  # never set
HELD = threading.Lock()      # held by the main thread forever
LA = threading.Lock()
LB = threading.Lock()
HAVE_A = threading.Event()
HAVE_B = threading.Event()
EXPECTED = []                # names of the threads that must block
ARRIVED = []                 # names of the threads about to block
ARRIVED_LOCK = threading.Lock()


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def arrive():
    with ARRIVED_LOCK:
        ARRIVED.append(threading.current_thread().name)


def blocked_on_lock():
    arrive()
    HELD.acquire()


def blocked_on_event():
    arrive()
    FOREVER.wait()


def sleeping_gen():
    arrive()
    time.sleep(3600 * 24)
    yield 1


def consume_gen():
    for _ in sleeping_gen():
        pass


def dead_a():
    with LA:
        HAVE_A.set()
        HAVE_B.wait()
        arrive()
        with LB:
            pass


def dead_b():
    with LB:
        HAVE_B.set()
        HAVE_A.wait()
        arrive()
        with LA:
            pass


def recurse(n):
    if n == 0:
        arrive()
        FOREVER.wait()
    else:
        recurse(n - 1)


class Worker(object):
    def method(self):
        self.helper()

    def helper(self):
        Worker.static_part()

    @staticmethod
    def static_part():
        Worker.class_part()

    @classmethod
    def class_part(cls):
        arrive()
        FOREVER.wait()


def outer():
    def middle():
        def inner():
            arrive()
            FOREVER.wait()
        inner()
    middle()


def deco(fn):
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@deco
def decorated():
    arrive()
    FOREVER.wait()


def in_comprehension(x):
    arrive()
    FOREVER.wait()
    return x


def comprehension():
    return [in_comprehension(x) for x in [1]]


def class_body():
    class Body(object):
        arrive()
        FOREVER.wait()
    return Body


def with_locals(a_int, a_float):
    a_str = "h\xc3\xa9llo" if not PY3 else u"h\u00e9llo"
    a_bytes = b"by\x00"
    a_true = True
    a_none = None
    a_list = [1, 2, 3]
    a_dict = {"k": 1, "l": 2}
    a_tuple = (1, 2)
    an_empty_set = set()
    an_empty_frozenset = frozenset()
    an_empty_list = []
    an_empty_dict = {}
    an_empty_tuple = ()
    a_class = Worker
    a_builtin_class = int
    a_library_class = collections.OrderedDict
    arrive()
    FOREVER.wait()


# The non-ASCII file and, on 3.x, the non-ASCII function name and the
# coroutines live in files written next to this script, compiled with their
# real paths.
UNI_SRC_2 = """# -*- coding: utf-8 -*-
def unicode_wait(arrive, ev):
    arrive()
    ev.wait()
"""

UNI_SRC_3 = u"""# -*- coding: utf-8 -*-
def f\u00fcnf_\u00e9t\u00e9(arrive, ev):
    arrive()
    ev.wait()
"""

CORO_SRC = """import asyncio


async def leaf(arrive, ev):
    arrive()
    ev.wait()


async def mid(arrive, ev):
    await leaf(arrive, ev)


def run_loop(arrive, ev):
    loop = asyncio.new_event_loop()
    loop.run_until_complete(mid(arrive, ev))
"""


def load(path, src):
    with open(path, "wb") as f:
        f.write(src.encode("utf-8") if not isinstance(src, bytes) else src)
    ns = {}
    exec(compile(src if PY3 else src, path, "exec"), ns)
    return ns


def spawn(name, target, *args):
    t = threading.Thread(target=target, name=name, args=args)
    t.daemon = True
    EXPECTED.append(name)
    t.start()
    return t


def frames_of(frame):
    """The ground truth for one thread: outermost first."""
    tb = traceback.extract_stack(frame)
    quals = []
    f = frame
    while f is not None:
        quals.append(getattr(f.f_code, "co_qualname", None))
        f = f.f_back
    quals.reverse()
    res = []
    for (filename, lineno, name, _), q in zip(tb, quals):
        res.append({"file": filename, "line": lineno, "name": name, "qualname": q})
    return res


def snapshot(me):
    cur = sys._current_frames()
    by_ident = dict((t.ident, t) for t in threading.enumerate())
    threads = []
    for ident, frame in cur.items():
        if ident == me:
            continue
        t = by_ident.get(ident)
        if t is None:
            continue
        main = t.name == "MainThread"
        if hasattr(threading, "main_thread"):
            main = t is threading.main_thread()
        threads.append({
            "name": t.name,
            "ident": ident,
            "native_id": getattr(t, "native_id", None),
            "main": main,
            "frames": frames_of(frame),
        })
    threads.sort(key=lambda x: x["name"])
    return threads


def reporter():
    me = threading.current_thread().ident
    deadline = time.time() + 20
    while time.time() < deadline:
        with ARRIVED_LOCK:
            n = len(ARRIVED)
        if n >= len(EXPECTED):
            break
        time.sleep(0.01)
    # Wait until every thread's stack stays the same.
    prev = None
    while time.time() < deadline:
        cur = snapshot(me)
        if cur == prev:
            break
        prev = cur
        time.sleep(0.1)
    info = {
        "threads": cur,
        "expected": EXPECTED,
        "locals_function": "with_locals",
        "locals": {
            "a_int": repr(42), "a_float": repr(1.5),
            "a_str": repr("h\xc3\xa9llo" if not PY3 else u"h\u00e9llo"),
            "a_bytes": repr(b"by\x00"), "a_true": repr(True), "a_none": repr(None),
            "an_empty_set": repr(set()), "an_empty_frozenset": repr(frozenset()),
            "an_empty_list": repr([]), "an_empty_dict": repr({}), "an_empty_tuple": repr(()),
            "a_class": repr(Worker), "a_builtin_class": repr(int),
            "a_library_class": repr(collections.OrderedDict),
        },
    }
    out("STACKS " + json.dumps(info, sort_keys=True))
    out("READY pid=%d" % os.getpid())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    uni_dir = os.path.join(here, "\xc3\xbcn\xc3\xaf-dir" if not PY3 else u"\u00fcn\u00ef-dir")
    os.mkdir(uni_dir)
    uni_file = os.path.join(uni_dir, "m\xc3\xb6d\xc3\xbcl\xc3\xa9.py" if not PY3 else u"m\u00f6d\u00fcl\u00e9.py")

    HELD.acquire()
    spawn("lock", blocked_on_lock)
    spawn("event", blocked_on_event)
    spawn("generator", consume_gen)
    spawn("dead-a", dead_a)
    spawn("dead-b", dead_b)
    spawn("deep", recurse, 500)
    spawn("method", Worker().method)
    spawn("nested", outer)
    spawn("lambda", lambda: blocked_on_event())
    spawn("decorated", decorated)
    spawn("comprehension", comprehension)
    spawn("class-body", class_body)
    spawn("locals", with_locals, 42, 1.5)
    if PY3:
        ns = load(uni_file, UNI_SRC_3)
        spawn(u"w\u00f6rker-\u00fcn\u00ef \u6f22\u5b57", ns[u"f\u00fcnf_\u00e9t\u00e9"], arrive, FOREVER)
        ns = load(os.path.join(here, "coro.py"), CORO_SRC)
        spawn("asyncio", ns["run_loop"], arrive, FOREVER)
    else:
        ns = load(uni_file, UNI_SRC_2)
        spawn("w\xc3\xb6rker-\xc3\xbcn\xc3\xaf \xe6\xbc\xa2\xe5\xad\x97", ns["unicode_wait"], arrive, FOREVER)
    EXPECTED.append(threading.current_thread().name)
    r = threading.Thread(target=reporter, name="reporter")
    r.daemon = True
    r.start()
    main_wait()


def main_wait():
    arrive()
    FOREVER.wait()


if __name__ == "__main__":
    main()
