# late_thread.py: a thread that starts while a profiler samples (Python
# 2.7 and 3.x). The main thread waits on stdin; each line starts a thread
# that runs late_spin() for ever. Prints "READY" first.
import sys
import threading


def late_spin():
    x = 0
    while True:
        x += 1


print("READY")
sys.stdout.flush()
while sys.stdin.readline():
    t = threading.Thread(target=late_spin, name="late")
    t.daemon = True
    t.start()
