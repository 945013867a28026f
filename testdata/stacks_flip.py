# stacks_flip.py: a thread named "flipper" alternates, every ~2 ms, between
# running Python code (in spin) and sleeping (in nap, in time.sleep), for
# tests that the state pyglass shows is the one the frames were read in,
# and that a profile puts the thread where it spends its time: flipper
# measures the wall time it spends in each, and a line on stdin makes the
# main thread (otherwise waiting on stdin) print
# "SPLIT <seconds in spin> <seconds in nap>". A profiler whose wake-ups
# are late on a CPU this thread keeps busy samples it where it blocks (in
# nap), not where it runs. Python 2.7 and 3.x. Prints "READY pid=P".
import os
import sys
import threading
import time

spent = [0.0, 0.0]


def spin():
    end = time.time() + 0.002
    n = 0
    while time.time() < end:
        n += 1
    return n


def nap():
    time.sleep(0.002)


def flipper():
    clock = time.time
    while True:
        t0 = clock()
        spin()
        t1 = clock()
        nap()
        t2 = clock()
        spent[0] += t1 - t0
        spent[1] += t2 - t1


t = threading.Thread(target=flipper, name="flipper")
t.daemon = True
t.start()
sys.stdout.write("READY pid=%d\n" % os.getpid())
sys.stdout.flush()
while sys.stdin.readline():
    sys.stdout.write("SPLIT %.6f %.6f\n" % (spent[0], spent[1]))
    sys.stdout.flush()
