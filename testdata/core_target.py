# core_target.py: a target for the core-file tests (Python 2.7 and 3.x).
#
# It lets the kernel write a core ("core" in its own directory: it sets
# RLIMIT_CORE to unlimited and changes to the directory of this script),
# starts a thread "worker-1" blocked in time.sleep in worker_wait, and
# prints the ground truth of its stacks, one line per thread, outermost
# frame first:
#   "GT <name> <function>:<line> <function>:<line> ..."
#   "GTSEGV MainThread ..." the main thread's stack if it is told to crash
# then "READY". Each line read on stdin is a command: "segv" makes the
# main thread dereference address 1 through ctypes (a SIGSEGV in C code,
# fault address 0x1), from crash_here.
import ctypes
import os
import resource
import sys
import threading
import time


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def chain(f):
    frames = []
    while f is not None:
        frames.append("%s:%d" % (f.f_code.co_name, f.f_lineno))
        f = f.f_back
    frames.reverse()
    return frames


def worker_wait(ev):
    ev.set()
    while True:
        time.sleep(100)


def crash_here():
    ctypes.string_at(1)


def main_wait(worker):
    time.sleep(0.2)  # the worker is asleep by then
    out("GT worker-1 " + " ".join(chain(sys._current_frames()[worker.ident])))
    f = sys._getframe()
    here = f.f_lineno  # the readline is 5 lines below, the crash 7
    base = chain(f.f_back) + ["main_wait:%d" % (here + 5)]
    out("GT MainThread " + " ".join(base))
    out("GTSEGV MainThread " + " ".join(base[:-1] + ["main_wait:%d" % (here + 7), "crash_here:%d" % (crash_here.__code__.co_firstlineno + 1)]))
    out("READY pid=%d" % os.getpid())
    line = sys.stdin.readline()
    if line.strip() == "segv":
        crash_here()
    time.sleep(1000)


def main():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    ev = threading.Event()
    t = threading.Thread(target=worker_wait, args=(ev,), name="worker-1")
    t.daemon = True
    t.start()
    ev.wait()
    main_wait(t)


main()
