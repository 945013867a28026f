# stacks_exit.py: a target that exits on its own while pyglass may be
# reading it, for `pyglass stacks` tests (Python 2.7 and 3.x).
#
# usage: stacks_exit.py SECONDS
#
# Starts 50 threads blocked in Event.wait, prints "READY pid=P", sleeps
# SECONDS and exits with status 7 (os._exit, threads still blocked).
import os
import sys
import threading
import time

ev = threading.Event()
for i in range(50):
    t = threading.Thread(target=ev.wait, name="waiter-%d" % i)
    t.daemon = True
    t.start()
sys.stdout.write("READY pid=%d\n" % os.getpid())
sys.stdout.flush()
time.sleep(float(sys.argv[1]))
os._exit(7)
