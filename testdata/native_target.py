# native_target.py: a target blocked in C with native and Python frames
# interleaved (Python 2.7 and 3.x), for stacks --native.
#
# The thread "sorter" calls libc's qsort through ctypes with a Python
# comparison function, compare, which sleeps: its stack is, outermost
# first, sorter (Python) -> ctypes -> qsort (libc) -> ctypes' callback ->
# compare (Python) -> time.sleep -> the C sleep. The main thread sleeps
# in main_sleep. A third thread, started by C (pthread_create of libc's
# pause), is one Python does not know: "CTHREAD <tid>" gives its id.
# "READY" is printed once compare runs.
import ctypes
import ctypes.util
import os
import sys
import threading
import time

entered = threading.Event()


def compare(a, b):
    entered.set()
    while True:
        time.sleep(100)


def sorter():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    cmp_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    arr = (ctypes.c_int * 4)(4, 3, 2, 1)
    libc.qsort(arr, 4, ctypes.sizeof(ctypes.c_int), cmp_type(compare))


def c_thread():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    before = set(os.listdir("/proc/self/task"))
    th = ctypes.c_ulong()
    pause = ctypes.cast(libc.pause, ctypes.c_void_p)
    if libc.pthread_create(ctypes.byref(th), None, pause, None) != 0:
        raise OSError("pthread_create failed")
    for _ in range(3000):
        new = set(os.listdir("/proc/self/task")) - before
        if new:
            sys.stdout.write("CTHREAD %s\n" % new.pop())
            return
        time.sleep(0.01)


def main_sleep():
    c_thread()
    t = threading.Thread(target=sorter, name="sorter")
    t.daemon = True
    t.start()
    entered.wait(30)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        time.sleep(100)


main_sleep()
