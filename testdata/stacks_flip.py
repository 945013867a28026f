# stacks_flip.py: a thread named "flipper" alternates, every ~2 ms, between
# running Python code (in spin) and sleeping (in nap, in time.sleep), for
# tests that the state pyglass shows is the one the frames were read in
# (Python 2.7 and 3.x). The main thread sleeps. Prints "READY pid=P".
import os
import sys
import threading
import time


def spin():
    end = time.time() + 0.002
    n = 0
    while time.time() < end:
        n += 1
    return n


def nap():
    time.sleep(0.002)


def flipper():
    while True:
        spin()
        nap()


t = threading.Thread(target=flipper, name="flipper")
t.daemon = True
t.start()
sys.stdout.write("READY pid=%d\n" % os.getpid())
sys.stdout.flush()
while True:
    time.sleep(1)
