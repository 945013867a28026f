# late_thread.py: a thread that starts while a profiler samples (Python
# 2.7 and 3.x). The main thread waits on stdin; each line starts a thread
# that sleeps 0.3 s (a profiler sees it idle), then runs late_spin() for
# ever. Prints "READY" first.
import sys
import threading
import time


def late():
    time.sleep(0.3)
    late_spin()


def late_spin():
    x = 0
    while True:
        x += 1


print("READY")
sys.stdout.flush()
while sys.stdin.readline():
    t = threading.Thread(target=late, name="late")
    t.daemon = True
    t.start()
