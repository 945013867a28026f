# leak_growth.py: a target whose list of Session objects grows at a steady,
# known rate (Python 2.7 and 3.x), for `pyglass objects --diff`.
#
# usage: leak_growth.py [rate=PER_SECOND]
#
# A thread named "grower" appends Session objects to the global SESSIONS
# so that, at any moment, it has made int(rate * seconds since it started)
# of them (default rate 1000): it catches up every 10 ms, so the rate
# holds whatever the scheduling. The main thread reads commands from stdin:
#   count  prints "COUNT n=N t=T": Session objects made so far and
#          time.time()
#   quit   exits
# Prints "READY pid=P version=X.Y.Z rate=R" once the grower runs, and
# "EXCEPTION Type: msg" for any exception.
import os
import sys
import threading
import time


class Session(object):
    def __init__(self, n):
        self.n = n


SESSIONS = []
lock = threading.Lock()


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def grow(rate, t0):
    while True:
        want = int((time.time() - t0) * rate)
        with lock:
            while len(SESSIONS) < want:
                SESSIONS.append(Session(len(SESSIONS)))
        time.sleep(0.01)


def main():
    rate = 1000.0
    for a in sys.argv[1:]:
        if a.startswith("rate="):
            rate = float(a.split("=", 1)[1])
    t = threading.Thread(target=grow, args=(rate, time.time()), name="grower")
    t.daemon = True
    t.start()
    v = sys.version_info
    out("READY pid=%d version=%d.%d.%d rate=%g" % (os.getpid(), v[0], v[1], v[2], rate))
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
                n = len(SESSIONS)
            out("COUNT n=%d t=%.6f" % (n, time.time()))
        elif cmd == "quit":
            return
        elif cmd:
            out("EXCEPTION ValueError: unknown command %r" % cmd)


if __name__ == "__main__":
    main()
