# stacks_churn.py: threads start and exit all the time, for `pyglass
# stacks` tests (Python 2.7 and 3.x).
#
# Four "spawner" threads each start short-lived threads named
# "short-<spawner>-<n>" in a loop (each sleeps 0-2 ms and ends); the main
# thread sleeps. Prints "READY pid=P" once every spawner runs its loop and
# "SPAWNED n" every 1000 threads per spawner.
import os
import sys
import threading
import time


def short():
    time.sleep(0.001 * (threading.current_thread().ident % 3))


running = [threading.Event() for k in range(4)]


def spawner(k):
    n = 0
    running[k].set()
    while True:
        t = threading.Thread(target=short, name="short-%d-%d" % (k, n))
        t.daemon = True
        t.start()
        t.join()
        n += 1
        if n % 1000 == 0:
            sys.stdout.write("SPAWNED %d\n" % n)
            sys.stdout.flush()


for k in range(4):
    s = threading.Thread(target=spawner, args=(k,), name="spawner-%d" % k)
    s.daemon = True
    s.start()
for e in running:
    e.wait()
sys.stdout.write("READY pid=%d\n" % os.getpid())
sys.stdout.flush()
while True:
    time.sleep(3600)
