# shell_target.py: a target for pyglass shell tests (Python 2.7 and 3.x).
#
# usage: shell_target.py [interval=SECONDS]
#
# Its main thread increments the global TICKS and prints "TICK n" every
# interval (default 0.1 s); a KeyboardInterrupt or any other exception in
# the loop prints "EXCEPTION Type: msg" and the loop goes on. The global
# GREETING is a constant for shells to read. Prints
# "READY pid=P version=X.Y.Z" first.
import os
import sys
import time

GREETING = "hello from the target"
TICKS = 0


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def main():
    global TICKS
    interval = 0.1
    for a in sys.argv[1:]:
        if a.startswith("interval="):
            interval = float(a.split("=", 1)[1])
    v = sys.version_info
    out("READY pid=%d version=%d.%d.%d" % (os.getpid(), v[0], v[1], v[2]))
    while True:
        try:
            time.sleep(interval)
            TICKS += 1
            out("TICK %d" % TICKS)
        except BaseException:
            e = sys.exc_info()[1]
            out("EXCEPTION %s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
