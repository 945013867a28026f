# two_calls.py: a thread that blocks in the same function from two lines
# of its caller, in turn (Python 2.7 and 3.x). worker() calls block()
# on the line marked FIRST, then on the line marked SECOND, for ever;
# block() waits on a lock the main thread releases every 30 ms. Between
# two releases the worker's stack is the same but for its caller's line
# (on 2.7 block()'s frame is even at the same address each time: the code
# object keeps it). Prints "READY" first.
import sys
import threading
import time

gate = threading.Lock()
gate.acquire()


def block():
    gate.acquire()


def worker():
    while True:
        block()  # FIRST
        block()  # SECOND


t = threading.Thread(target=worker, name="worker")
t.daemon = True
t.start()
print("READY")
sys.stdout.flush()
while True:
    time.sleep(0.03)
    try:
        gate.release()
    except Exception:  # the worker has not taken it again yet
        pass
