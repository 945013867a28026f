# stacks_busy.py: one thread, always busy calling and returning from Python
# functions (recursion, a comprehension, a lambda), so that a read of its
# stack without pausing it often meets a chain being changed (Python 2.7
# and 3.x). Prints "READY pid=P".
import os
import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def comp(n):
    return [x for x in range(n)]


def busy():
    sys.stdout.write("READY pid=%d\n" % os.getpid())
    sys.stdout.flush()
    while True:
        fib(12)
        comp(50)
        sorted([3, 2, 1], key=lambda x: -x)


busy()
