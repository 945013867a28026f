# stacks_rawfork.py: a child made by a raw fork() (libc's, called through
# ctypes), which skips PyOS_AfterFork_Child as uwsgi's workers do: the
# child's main thread state keeps the parent's native_thread_id, and the
# parent's other threads stay listed in the child as thread states of no
# task. Python 2.7 and 3.x.
#
# usage: stacks_rawfork.py [threads]
#   threads: the parent imports threading and starts a thread "helper"
#            before forking; without it threading is never imported.
#
# Output: "PARENT pid=P threading=0|1 [helper=TID]", then "CHILD pid=C", then
# "READY". The child loops in child_wait (time.sleep); both live until
# killed (they share the process group).
import ctypes
import os
import sys
import time


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def gettid():
    # SYS_gettid: 186 on x86-64, 178 on arm64.
    nr = 186 if os.uname()[4] == "x86_64" else 178
    return ctypes.CDLL(None).syscall(nr)


def child_wait():
    while True:
        time.sleep(0.05)


def parent_wait():
    while True:
        time.sleep(0.05)


helper = ""
if "threads" in sys.argv[1:]:
    import threading

    tid = []
    started = threading.Event()

    def helper_loop():
        tid.append(gettid())
        started.set()
        while True:
            time.sleep(0.05)

    t = threading.Thread(target=helper_loop, name="helper")
    t.daemon = True
    t.start()
    started.wait()
    helper = " helper=%d" % tid[0]

# Some builds import threading at startup (site): then it names the main
# thread.
out("PARENT pid=%d threading=%d%s" % (os.getpid(), "threading" in sys.modules, helper))
# PyDLL keeps the GIL across the call: the child starts holding it.
r, w = os.pipe()
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    out("CHILD pid=%d" % os.getpid())
    os.write(w, b"x")
    child_wait()
os.read(r, 1)
out("READY")
parent_wait()
