# stacks_broken.py: a target whose memory a test corrupts on purpose, for
# `pyglass stacks` tests of one unreadable thread (Python 2.7 and 3.x).
#
# A thread named "victim" records the address of its own PyThreadState
# (ctypes.pythonapi.PyThreadState_Get), then, in a with block on the lock
# `held`, blocks in lock.acquire() (one C call, the GIL released). A
# thread named "sleeper" sleeps in sleeper_wait. The main thread serves
# commands from stdin, one a line:
#   peek ADDR        prints "PEEK 0x..." (the 8 bytes at ADDR)
#   poke ADDR VALUE  writes the 8-byte VALUE at ADDR, prints "POKED 0x<old>"
#   waiter           starts a thread named "waiter" that waits for `held`
#                    in waiter_wait, prints "WAITER STARTED"
#   release          releases the victim, which prints "VICTIM DONE" and ends
#   quit             exits 0
# Numbers are hexadecimal (0x...). It prints "VICTIM tstate=0x... tid=N"
# then "READY pid=P version=X.Y.Z"; "EXCEPTION Type: msg" for any error.
import ctypes
import os
import sys
import threading
import time

lock = threading.Lock()
lock.acquire()
held = threading.Lock()
started = threading.Event()
info = {}


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def victim_blocked():
    lock.acquire()


def victim():
    get = ctypes.pythonapi.PyThreadState_Get
    get.restype = ctypes.c_void_p
    info["tstate"] = get()
    info["tid"] = getattr(threading, "get_native_id", lambda: 0)()
    with held:
        started.set()
        victim_blocked()
    out("VICTIM DONE")


def waiter_wait():
    with held:
        pass


def sleeper_wait():
    while True:
        time.sleep(3600)


def serve_commands():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        words = line.split()
        try:
            if words[0] == "peek":
                v = ctypes.c_uint64.from_address(int(words[1], 16)).value
                out("PEEK %#x" % v)
            elif words[0] == "poke":
                cell = ctypes.c_uint64.from_address(int(words[1], 16))
                old = cell.value
                cell.value = int(words[2], 16)
                out("POKED %#x" % old)
            elif words[0] == "waiter":
                w = threading.Thread(target=waiter_wait, name="waiter")
                w.daemon = True
                w.start()
                out("WAITER STARTED")
            elif words[0] == "release":
                lock.release()
            elif words[0] == "quit":
                return
        except Exception:
            e = sys.exc_info()[1]
            out("EXCEPTION %s: %s" % (type(e).__name__, e))


def main():
    v = threading.Thread(target=victim, name="victim")
    v.daemon = True
    v.start()
    s = threading.Thread(target=sleeper_wait, name="sleeper")
    s.daemon = True
    s.start()
    started.wait()
    out("VICTIM tstate=%#x tid=%d" % (info["tstate"], info["tid"]))
    vi = sys.version_info
    out("READY pid=%d version=%d.%d.%d" % (os.getpid(), vi[0], vi[1], vi[2]))
    serve_commands()


if __name__ == "__main__":
    main()
