# heartbeat.py: measures how long pyglass stalls a target (Python 2.7, 3.x).
#
# usage: heartbeat.py [period=SECONDS]
#
# A thread named "heartbeat" sleeps `period` (default 0.005) in a loop and
# records its longest stall: the time between two wakeups beyond the
# period (the gap in progress when asked included). The main thread reads commands from stdin, one a line:
#   stall  prints "STALL max_ms=M beats=N" (longest stall since the last
#          reset, and wakeups counted)
#   reset  clears the record, prints "RESET"
#   busy   starts a thread that shares the GIL the way pyglass's long
#          reports promise to (computes 2 ms, sleeps 0.1 ms), prints
#          "BUSY"; the stall the heartbeat records meanwhile is the
#          machine's and the GIL's, a baseline for pyglass's
#   idle   stops that thread, prints "IDLE"
#   quit   exits
# It prints "READY pid=P version=X.Y.Z" once the heartbeat runs, and
# "EXCEPTION Type: msg" for any exception (then goes on), e.g. an EINTR
# that Python 2.7 does not retry.
import errno
import os
import sys
import threading
import time

lock = threading.Lock()
state = {"max": 0.0, "beats": 0, "last": time.time()}


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def heartbeat(period):
    while True:
        time.sleep(period)
        now = time.time()
        with lock:
            stall = now - state["last"] - period
            state["last"] = now
            state["beats"] += 1
            if stall > state["max"]:
                state["max"] = stall


def int_arg(name, default):
    # The value of the command-line argument name=N, default if absent.
    for a in sys.argv[1:]:
        if a.startswith(name + "="):
            return int(a.split("=", 1)[1])
    return default


def longest_stall(period):
    # The gap in progress counts too: the heartbeat thread may not have run
    # yet since the process was resumed.
    with lock:
        ongoing = time.time() - state["last"] - period
        return max(state["max"], ongoing), state["beats"]


def share_gil(stop):
    while not stop:
        end = time.time() + 0.002
        while time.time() < end:
            pass
        time.sleep(0.0001)


def readline():
    while True:
        try:
            return sys.stdin.readline()
        except EnvironmentError:
            e = sys.exc_info()[1]
            out("EXCEPTION %s: %s" % (type(e).__name__, e))
            if e.errno != errno.EINTR:
                raise


def main():
    period = 0.005
    for a in sys.argv[1:]:
        if a.startswith("period="):
            period = float(a.split("=", 1)[1])
    t = threading.Thread(target=heartbeat, args=(period,), name="heartbeat")
    t.daemon = True
    t.start()
    time.sleep(period * 3)
    with lock:
        state["max"], state["beats"] = 0.0, 0
    v = sys.version_info
    out("READY pid=%d version=%d.%d.%d" % (os.getpid(), v[0], v[1], v[2]))
    sharer = None
    while True:
        line = readline()
        if not line:
            return
        cmd = line.strip()
        if cmd == "stall":
            stall, beats = longest_stall(period)
            out("STALL max_ms=%.3f beats=%d" % (stall * 1000, beats))
        elif cmd == "reset":
            with lock:
                state["max"], state["beats"] = 0.0, 0
            out("RESET")
        elif cmd == "busy" and sharer is None:
            stop = []
            sharer = (threading.Thread(target=share_gil, args=(stop,), name="busy"), stop)
            sharer[0].start()
            out("BUSY")
        elif cmd == "idle" and sharer is not None:
            sharer[1].append(True)
            sharer[0].join()
            sharer = None
            out("IDLE")
        elif cmd == "quit":
            return
        elif cmd:
            out("EXCEPTION ValueError: unknown command %r" % cmd)


if __name__ == "__main__":
    main()
