# carry_over.py: a sampler's carry-over of idle stacks (Python 2.7 and
# 3.x). A hot thread spins; a second thread blocks in phase_one() on a
# lock; the main thread waits on stdin. A line releases the lock: the
# second thread prints "PHASE2 <time.time()>" and sleeps in phase_two()
# for ever. Prints "READY" first.
import sys
import threading
import time

gate = threading.Lock()
gate.acquire()


def spin_forever():
    x = 0
    while True:
        x += 1


def phase_one():
    gate.acquire()
    sys.stdout.write("PHASE2 %.6f\n" % time.time())
    sys.stdout.flush()
    phase_two()


def phase_two():
    time.sleep(3600)


for target in (spin_forever, phase_one):
    t = threading.Thread(target=target, name=target.__name__)
    t.daemon = True
    t.start()
time.sleep(0.2)
print("READY")
sys.stdout.flush()
while sys.stdin.readline():
    gate.release()
