# spinner.py: a busy target for pyglass tests (Python 2.7 and 3.x).
#
# usage: spinner.py [MODE] [threads=N] [interval=SECONDS]
#
# MODE is what the main thread (and N extra threads, named spinner-1..N)
# spin on:
#   py   (default) a pure-Python loop in spin_inner, called by spin_outer
#        (the GIL is released at the usual switch interval)
#   cgil long C calls that keep the GIL without checking for signals or
#        pending calls (sum over a large range), in spin_cgil
#
# Output: "READY pid=P version=X.Y.Z mode=M" once spinning starts, then
# "SPIN n" every interval (default 1 second) from the main thread.
import os
import sys
import threading
import time

try:
    xrange
except NameError:
    xrange = range


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def spin_inner(n):
    x = 0
    for i in xrange(n):
        x += i * i % 7
    return x


def spin_outer():
    return spin_inner(20000)


def spin_cgil():
    return sum(xrange(20000000))


def spin_forever(fn, report):
    n, last = 0, time.time()
    while True:
        fn()
        if report and time.time() - last >= report:
            n += 1
            last = time.time()
            out("SPIN %d" % n)


def main():
    mode, nthreads, interval = "py", 0, 1.0
    for a in sys.argv[1:]:
        if a.startswith("threads="):
            nthreads = int(a.split("=", 1)[1])
        elif a.startswith("interval="):
            interval = float(a.split("=", 1)[1])
        else:
            mode = a
    fn = {"py": spin_outer, "cgil": spin_cgil}.get(mode)
    if fn is None:
        out("EXCEPTION ValueError: unknown mode %r" % mode)
        sys.exit(2)
    for i in range(nthreads):
        t = threading.Thread(target=spin_forever, args=(fn, 0), name="spinner-%d" % (i + 1))
        t.daemon = True
        t.start()
    v = sys.version_info
    out("READY pid=%d version=%d.%d.%d mode=%s" % (os.getpid(), v[0], v[1], v[2], mode))
    spin_forever(fn, interval)


if __name__ == "__main__":
    main()
