# sleeper.py: an idle target for pyglass tests (Python 2.7 and 3.x).
#
# usage: sleeper.py [MODE] [interval=SECONDS] [threads=N]
#
# MODE is where the main thread blocks between wakeups:
#   sleep  (default) time.sleep(interval)
#   select select.select on a pipe nobody writes, timeout interval
#   accept accept() on a listening TCP socket on 127.0.0.1 (timeout interval);
#          prints "PORT <n>" before READY; each connection is accepted and
#          closed ("ACCEPTED")
#   recv   recv() on one end of a socketpair nobody writes (timeout interval)
#
# threads=N starts N extra threads named worker-1..N, each blocked in
# time.sleep in a function called worker_wait.
#
# Output, one line each: "READY pid=P version=X.Y.Z mode=M" once set up;
# "TICK n" at each wakeup; "SHORT slept A of B" when a sleep ended early
# (an interrupted system call that was not restarted); "EXCEPTION Type: msg"
# for any exception in the loop, which then goes on.
import os
import select
import socket
import sys
import threading
import time


def out(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def parse(argv):
    mode, opts = "sleep", {}
    for a in argv:
        if "=" in a:
            k, v = a.split("=", 1)
            opts[k] = v
        else:
            mode = a
    return mode, float(opts.get("interval", "1")), int(opts.get("threads", "0"))


def worker_wait():
    while True:
        time.sleep(3600)


def start_workers(n):
    for i in range(n):
        t = threading.Thread(target=worker_wait, name="worker-%d" % (i + 1))
        t.daemon = True
        t.start()


def sleeper_sleep(interval):
    t0 = time.time()
    time.sleep(interval)
    dt = time.time() - t0
    if dt < interval * 0.9:
        out("SHORT slept %.3f of %.3f" % (dt, interval))


def sleeper_select(r, interval):
    t0 = time.time()
    ready = select.select([r], [], [], interval)
    dt = time.time() - t0
    if not ready[0] and dt < interval * 0.9:
        out("SHORT slept %.3f of %.3f" % (dt, interval))


def sleeper_accept(srv):
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        return
    conn.close()
    out("ACCEPTED")


def sleeper_recv(sock):
    try:
        data = sock.recv(1)
    except socket.timeout:
        return
    out("RECEIVED %r" % (data,))


def main():
    mode, interval, nthreads = parse(sys.argv[1:])
    start_workers(nthreads)
    if mode == "sleep":
        step = lambda: sleeper_sleep(interval)
    elif mode == "select":
        r, _w = os.pipe()
        step = lambda: sleeper_select(r, interval)
    elif mode == "accept":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(5)
        srv.settimeout(interval)
        out("PORT %d" % srv.getsockname()[1])
        step = lambda: sleeper_accept(srv)
    elif mode == "recv":
        a, _b = socket.socketpair()
        a.settimeout(interval)
        step = lambda: sleeper_recv(a)
    else:
        out("EXCEPTION ValueError: unknown mode %r" % mode)
        sys.exit(2)
    v = sys.version_info
    out("READY pid=%d version=%d.%d.%d mode=%s" % (os.getpid(), v[0], v[1], v[2], mode))
    n = 0
    while True:
        try:
            step()
        except SystemExit:
            raise
        except BaseException:
            e = sys.exc_info()[1]
            out("EXCEPTION %s: %s" % (type(e).__name__, e))
        n += 1
        out("TICK %d" % n)


if __name__ == "__main__":
    main()
