# eintr_waiter.py: threads blocked in the system calls that a ptrace stop
# makes fail with EINTR even without a signal handler (signal(7)), to show
# that pyglass's pauses never make them fail (Python 2.7 and 3.x).
#
# A thread calls libc's epoll_wait through ctypes (the GIL released, no
# retry: the errno is the kernel's answer) on a pipe nobody writes, with a
# 200 ms timeout, in a loop, counting the calls that failed with EINTR.
# On Python 2 a second thread calls select.epoll's poll, which raises
# IOError(EINTR) there (no retry before PEP 475), counted too. The main
# thread reads commands from stdin:
#   count  prints "EINTR n=N loops=L": the failed calls, and the calls made
#   quit   exits
# With the argument "all", every thread waits in such a call, with no
# timeout: the C waiter, and the main thread in libc's epoll_wait on
# stdin (counted too), so that code run in the process (pyglass exec) has
# to borrow one of them.
# Prints "READY pid=P" once the threads wait.
import ctypes
import errno
import os
import select
import sys
import threading

libc = ctypes.CDLL(None, use_errno=True)
counts = {'eintr': 0, 'loops': 0}
lock = threading.Lock()


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


ALL = sys.argv[1:] == ["all"]
TIMEOUT = -1 if ALL else 200


def c_waiter(ep, started):
    buf = ctypes.create_string_buffer(64)
    started.set()
    while True:
        n = libc.epoll_wait(ep.fileno(), buf, 1, TIMEOUT)
        e = ctypes.get_errno()
        with lock:
            counts['loops'] += 1
            if n < 0 and e == errno.EINTR:
                counts['eintr'] += 1


def py_waiter(ep, started):
    started.set()
    while True:
        try:
            ep.poll(0.2 if TIMEOUT > 0 else -1)
        except (IOError, OSError):
            e = sys.exc_info()[1]
            if e.errno == errno.EINTR:
                with lock:
                    counts['eintr'] += 1


def main():
    r, w = os.pipe()
    waiters = [c_waiter]
    if sys.version_info[0] == 2:
        waiters.append(py_waiter)
    for f in waiters:
        ep = select.epoll()
        ep.register(r, select.EPOLLIN)
        started = threading.Event()
        t = threading.Thread(target=f, args=(ep, started), name=f.__name__)
        t.daemon = True
        t.start()
        started.wait()
    out("READY pid=%d" % os.getpid())
    if ALL:
        wait_stdin()
        return
    while True:
        line = sys.stdin.readline()
        if not command(line):
            return


def command(line):
    if not line or line.strip() == "quit":
        return False
    if line.strip() == "count":
        with lock:
            out("EINTR n=%d loops=%d" % (counts['eintr'], counts['loops']))
    return True


def wait_stdin():
    ep = select.epoll()
    ep.register(0, select.EPOLLIN)
    buf = ctypes.create_string_buffer(64)
    pending = b""
    while True:
        n = libc.epoll_wait(ep.fileno(), buf, 1, -1)
        e = ctypes.get_errno()
        with lock:
            counts['loops'] += 1
            if n < 0 and e == errno.EINTR:
                counts['eintr'] += 1
        if n <= 0:
            continue
        data = os.read(0, 4096)
        if not data:
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if not command(line.decode() + "\n"):
                return


main()
