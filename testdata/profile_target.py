# The profiler's target: one hot thread about 25 frames deep that spends
# 70 % of its time in a() and 30 % in b(), and 9 idle threads. The split is
# by work (the same loop, 7 and 3 times as long). The target also measures
# the wall time it spends in a() and b(): a line on stdin makes it print
# "SPLIT <seconds in a> <seconds in b> <rounds of a and b done>", the ground
# truth a test compares a profile with (on a loaded machine the split by
# work drifts a little), and the work rate a benchmark compares with and
# without a profiler.
# Runs on Python 2.7 and 3.x. With an argument N it exits after N seconds.
import sys
import threading
import time

spent = [0.0, 0.0, 0]


# Each idle thread says it is about to sleep; the hot loop waits for all.
asleep = threading.Semaphore(0)


def idle():
    asleep.release()
    while True:
        time.sleep(3600)


def report():
    while sys.stdin.readline():
        sys.stdout.write("SPLIT %.6f %.6f %d\n" % (spent[0], spent[1], spent[2]))
        sys.stdout.flush()


for i in range(9):
    t = threading.Thread(target=report if i == 0 else idle, name="idle-%d" % i)
    t.daemon = True
    t.start()

stop_at = time.time() + float(sys.argv[1]) if len(sys.argv) > 1 else None


def spin(n):
    x = 0
    for i in range(n):
        x += i
    return x


def a():
    spin(7000)


def b():
    spin(3000)


def deep(n):
    if n == 0:
        clock = time.time
        while stop_at is None or clock() < stop_at:
            t0 = clock()
            a()
            t1 = clock()
            b()
            t2 = clock()
            spent[0] += t1 - t0
            spent[1] += t2 - t1
            spent[2] += 1
        return
    deep(n - 1)


# Let the idle threads reach their sleep before the hot loop starts: once
# it runs, an idle thread still on its way there waits for the GIL, and
# on a loaded machine spends long stretches runnable (not idle) with
# idle() on its stack (CI once saw 159 of 419 stacks so, on 3.9).
for i in range(8):
    asleep.acquire()
time.sleep(0.2)
print("READY")
sys.stdout.flush()
deep(22)
