# leak_cycles.py: makes reference cycles of objects with __del__ (Python
# 2.7 and 3.x), for pyglass's garbage report.
#
# usage: leak_cycles.py [N] [pending]
#
# Prints "READY pid=P version=X.Y.Z", then waits for a line on stdin (so a
# test can run `pyglass trace start` first), then makes N cycles of two
# Leaky objects (a.other = b, b.other = a, each with __del__) on the line
# marked LEAK-LINE (N defaults to 500), drops them and runs gc.collect().
# On 2.7 the collector cannot free them and puts them in gc.garbage; 3.4+
# frees them. With "pending" the collector is disabled first and no
# collection runs, so the cycles stay unreachable and uncollected until
# someone collects (pyglass garbage --saveall). Prints
# "LEAKED n=N garbage=G size=S retained=R" where G is len(gc.garbage), S is
# sum(sys.getsizeof(o) for o in gc.garbage) and R adds the size of each
# object's __dict__, then waits, answering "garbage" on stdin with a fresh
# "GARBAGE ..." line of the same fields.
import gc
import os
import sys
import time


class Leaky(object):
    def __init__(self):
        self.other = None

    def __del__(self):
        pass


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def make(n):
    for _ in range(n):
        a, b = Leaky(), Leaky()  # LEAK-LINE
        a.other = b
        b.other = a


def state():
    g = gc.garbage
    size = sum(sys.getsizeof(o) for o in g)
    dicts = sum(sys.getsizeof(o.__dict__) for o in g if isinstance(o, Leaky))
    return "garbage=%d size=%d retained=%d" % (len(g), size, size + dicts)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    pending = "pending" in sys.argv[2:]
    gc.collect()
    v = sys.version_info
    out("READY pid=%d version=%d.%d.%d" % (os.getpid(), v[0], v[1], v[2]))
    sys.stdin.readline()
    if pending:
        gc.disable()
    make(n)
    if not pending:
        gc.collect()
    out("LEAKED n=%d %s" % (n, state()))
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip() == "garbage":
            out("GARBAGE %s" % state())


if __name__ == "__main__":
    main()
