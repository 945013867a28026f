# leak_paths.py: a target with six kinds of leak growing at a known rate
# (Python 2.7 and 3.x), for `pyglass trace top` and `pyglass objects
# --paths`. Each leak keeps objects of its own class, each with a payload
# of PAYLOAD bytes allocated on the line marked LEAK-<NAME>:
#   cache    CACHE, a module-level dict: CACHE['k<i>'] -> CacheEntry
#   class    Registry.items, a list on a class -> ClassItem
#   closure  a list in the closure cell of the module-level function ADD
#            -> ClosureItem
#   local    LOCAL.buf, a threading.local's list on the thread "grower"
#            -> LocalItem
#   gen      a list held only by the suspended generator GEN -> GenItem
#   cycle    a ring of CycleNode (.next/.prev) kept by the global RING
#
# usage: leak_paths.py [rate=PER_SECOND]
#
# The thread "grower" adds one object to each leak so that it has made
# int(rate * seconds since it started) of each (default 200), catching up
# every 10 ms. The main thread reads commands from stdin:
#   count  prints "COUNT n=N t=T": objects made per leak so far
#   quit   exits
# Prints "READY pid=P version=X.Y.Z rate=R payload=B" once the grower
# runs, and "EXCEPTION Type: msg" for any exception.
import os
import sys
import threading
import time

PAYLOAD = 4096


def item_class(name):
    """A class whose instances keep one payload in .data."""
    def init(self, data):
        self.data = data
    return type(name, (object,), {'__init__': init, '__module__': __name__})


CacheEntry = item_class('CacheEntry')
ClassItem = item_class('ClassItem')
ClosureItem = item_class('ClosureItem')
LocalItem = item_class('LocalItem')
GenItem = item_class('GenItem')


class CycleNode(object):
    def __init__(self, data):
        self.data = data
        self.next = self
        self.prev = self


class Registry(object):
    items = []


CACHE = {}
LOCAL = threading.local()
RING = CycleNode(None)


def make_closure():
    held = []

    def add(i):
        held.append(ClosureItem(b'c' * PAYLOAD))  # LEAK-closure
    return add


ADD = make_closure()


def keeper():
    kept = []
    while True:
        i = yield
        kept.append(GenItem(b'g' * PAYLOAD))  # LEAK-gen


GEN = keeper()
next(GEN)
made = [0]
lock = threading.Lock()


def add_one(i):
    CACHE['k%d' % i] = CacheEntry(b'k' * PAYLOAD)  # LEAK-cache
    Registry.items.append(ClassItem(b'r' * PAYLOAD))  # LEAK-class
    ADD(i)
    LOCAL.buf.append(LocalItem(b'l' * PAYLOAD))  # LEAK-local
    GEN.send(i)
    node = CycleNode(b'n' * PAYLOAD)  # LEAK-cycle
    node.prev = RING.prev
    node.next = RING
    RING.prev.next = node
    RING.prev = node


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def grow(rate, t0):
    LOCAL.buf = []
    while True:
        want = int((time.time() - t0) * rate)
        with lock:
            while made[0] < want:
                add_one(made[0])
                made[0] += 1
        time.sleep(0.01)


def main():
    rate = 200.0
    for a in sys.argv[1:]:
        if a.startswith("rate="):
            rate = float(a.split("=", 1)[1])
    t = threading.Thread(target=grow, args=(rate, time.time()), name="grower")
    t.daemon = True
    t.start()
    v = sys.version_info
    out("READY pid=%d version=%d.%d.%d rate=%g payload=%d" % (os.getpid(), v[0], v[1], v[2], rate, PAYLOAD))
    while True:
        try:
            line = sys.stdin.readline()
        except EnvironmentError:
            e = sys.exc_info()[1]
            out("EXCEPTION %s: %s" % (type(e).__name__, e))
            continue
        if not line:
            return
        cmd = line.strip()
        if cmd == "count":
            with lock:
                n = made[0]
            out("COUNT n=%d t=%.6f" % (n, time.time()))
        elif cmd == "quit":
            return
        elif cmd:
            out("EXCEPTION ValueError: unknown command %r" % cmd)


if __name__ == "__main__":
    main()
