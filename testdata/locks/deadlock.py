# Scenarios for pyglass locks tests. Usage: python deadlock.py SCENARIO
# Writes "READY <json>" on stdout once every thread is in place: the ground
# truth (thread ids and what each should wait for).
import sys, threading, time, json
try:
    import queue
except ImportError:
    import Queue as queue
try:
    from threading import get_native_id as _nid
except ImportError:
    import ctypes
    _libc = ctypes.CDLL(None)
    def _nid():
        return _libc.syscall(186)  # gettid, amd64

truth = {}
ready = threading.Semaphore(0)

def mark(key):
    truth[key] = _nid()

class Cache(object):
    def __init__(self, kind):
        self._a = kind()
        self._b = kind()

    def first(self, step):
        with self._a:
            mark("t1")
            step.wait()
            with self._b:
                pass

    def second(self, step):
        with self._b:
            mark("t2")
            step.wait()
            with self._a:
                pass

def two(kind):
    c = Cache(kind)
    step = threading.Event()
    ts = [threading.Thread(target=c.first, args=(step,), name="worker-1"),
          threading.Thread(target=c.second, args=(step,), name="worker-2")]
    for t in ts:
        t.daemon = True
        t.start()
    while len(truth) < 2:
        time.sleep(0.01)
    step.set()

def three():
    locks = [threading.Lock() for _ in range(3)]
    step = threading.Event()
    def run(i):
        mine, other = locks[i], locks[(i + 1) % 3]
        with mine:
            mark("t%d" % (i + 1))
            step.wait()
            other.acquire()
    for i in range(3):
        t = threading.Thread(target=run, args=(i,), name="ring-%d" % (i + 1))
        t.daemon = True
        t.start()
    while len(truth) < 3:
        time.sleep(0.01)
    step.set()

def join():
    forever = threading.Event()
    def sleeper():
        mark("t2")
        forever.wait()
    t = threading.Thread(target=sleeper, name="sleeper")
    t.daemon = True
    t.start()
    def joiner():
        mark("t1")
        t.join()
    j = threading.Thread(target=joiner, name="joiner")
    j.daemon = True
    j.start()

def condition():
    cond = threading.Condition()
    def waiter():
        mark("t1")
        with cond:
            cond.wait()
    t = threading.Thread(target=waiter, name="waiter")
    t.daemon = True
    t.start()

def getter():
    q = queue.Queue()
    def consumer():
        mark("t1")
        q.get()
    t = threading.Thread(target=consumer, name="consumer")
    t.daemon = True
    t.start()

def idle():
    def sleeper():
        mark("t1")
        while True:
            time.sleep(100)
    t = threading.Thread(target=sleeper, name="sleeper")
    t.daemon = True
    t.start()

def child():
    import subprocess
    def runner():
        mark("t1")
        p = subprocess.Popen(["sleep", "1000"])
        truth["child"] = p.pid
        p.wait()
    t = threading.Thread(target=runner, name="runner")
    t.daemon = True
    t.start()
    while "child" not in truth:
        time.sleep(0.01)

def gil():
    import ctypes
    libc = ctypes.PyDLL(None)  # PyDLL: calls keep the GIL
    go = threading.Event()
    def hog():
        mark("t1")
        go.wait()
        libc.sleep(1000)
    def busy():
        mark("t2")
        while True:
            pass
    for f, n in ((busy, "busy"), (hog, "hog")):
        t = threading.Thread(target=f, name=n)
        t.daemon = True
        t.start()
    while len(truth) < 2:
        time.sleep(0.01)
    truth["main"] = _nid()
    sys.stdout.write("READY " + json.dumps(truth) + "\n")
    sys.stdout.flush()
    go.set()
    while True:
        time.sleep(100)

def silent_server():
    # A local server, in a thread of this process, that accepts one
    # connection and never answers; returns its thread's function and the
    # list the accepted connection goes to. truth["port"] is its port.
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    truth["port"] = srv.getsockname()[1]
    conns = []
    def server():
        conns.append(srv.accept())
        threading.Event().wait()
    return server, conns

def sock():
    import socket
    server, _ = silent_server()
    def client():
        c = socket.create_connection(("127.0.0.1", truth["port"]))
        mark("t1")
        c.recv(1)
    for f, n in ((server, "server"), (client, "client")):
        t = threading.Thread(target=f, name=n)
        t.daemon = True
        t.start()

def ranked():
    # t2 holds the lock in a with block, t3 only has it in a local, t1
    # waits for it.
    lock = threading.Lock()
    def holder():
        with lock:
            mark("t2")
            threading.Event().wait()
    def bystander(l):
        mark("t3")
        while True:
            time.sleep(100)
    def waiter():
        while len(truth) < 2:
            time.sleep(0.01)
        mark("t1")
        lock.acquire()
    for f, n, a in ((holder, "holder", ()), (bystander, "bystander", (lock,)), (waiter, "waiter", ())):
        t = threading.Thread(target=f, name=n, args=a)
        t.daemon = True
        t.start()

IMPORTED = """
import sys, threading
main = sys.modules["__main__"]
def helper():
    main.mark("t2")
    import pg_import_a  # waits: pg_import_a is being imported by t1
main.mark("t1")
t = threading.Thread(target=helper, name="helper")
t.daemon = True
t.start()
t.join()  # the helper waits for this import to finish: deadlock
"""

def imports():
    # t1 imports pg_import_a, whose code starts t2 and joins it; t2
    # imports pg_import_a too: it waits for the module's lock (2.7: the
    # global import lock), which t1 holds while it joins t2.
    import tempfile, os
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "pg_import_a.py"), "w") as f:
        f.write(IMPORTED)
    sys.path.insert(0, d)
    def importer():
        import pg_import_a
    t = threading.Thread(target=importer, name="importer")
    t.daemon = True
    t.start()
    while len(truth) < 2:
        time.sleep(0.01)

def selects():
    # t1 selects on a pipe whose writer is a child process, t2 polls a
    # socket connected to a server thread of this process, t3 waits in
    # epoll on a pipe of its own, t4 reads a Unix socketpair.
    import subprocess, select, socket, os
    child = subprocess.Popen(["sleep", "1000"], stdout=subprocess.PIPE)
    truth["child"] = child.pid
    truth["pipe_fd"] = child.stdout.fileno()
    server, conns = silent_server()
    def selector():
        mark("t1")
        select.select([child.stdout], [], [])
    def epoller():
        r, w = os.pipe()
        truth["epoll_pipe"] = r
        e = select.epoll()
        e.register(r, select.EPOLLIN)
        mark("t3")
        e.poll()
    kept = []
    def unix_reader():
        a, b = socket.socketpair()
        kept.append(b)  # kept open: the other end, in this process
        truth["unix_fd"], truth["unix_peer_fd"] = a.fileno(), b.fileno()
        mark("t4")
        a.recv(1)
    def poller():
        c = socket.create_connection(("127.0.0.1", truth["port"]))
        truth["sock_fd"] = c.fileno()
        while not conns:
            time.sleep(0.01)
        truth["server_fd"] = conns[0][0].fileno()
        p = select.poll()
        p.register(c, select.POLLIN)
        mark("t2")
        p.poll()
    for f, n in ((server, "server"), (selector, "selector"), (poller, "poller"), (epoller, "epoller"), (unix_reader, "unix")):
        t = threading.Thread(target=f, name=n)
        t.daemon = True
        t.start()
    while len([k for k in ("t1", "t2", "t3", "t4") if k in truth]) < 4:
        time.sleep(0.01)

def ten():
    # Ten threads, each 20 calls deep: two RLock deadlocks (t1..t4),
    # three in Event.wait, three asleep.
    for k in range(2):
        truth.pop("t1", None)
        truth.pop("t2", None)
        c = Cache(threading.RLock)
        step = threading.Event()
        for i, f in enumerate((c.first, c.second)):
            t = threading.Thread(target=nested, args=(20, f, step), name="pair-%d-%d" % (k, i))
            t.daemon = True
            t.start()
        while "t1" not in truth or "t2" not in truth:
            time.sleep(0.01)
        truth["a%d" % k], truth["b%d" % k] = truth["t1"], truth["t2"]
        step.set()
    forever = threading.Event()
    for i in range(3):
        for n, f in (("waiter", forever.wait), ("sleeper", lambda: time.sleep(1000))):
            t = threading.Thread(target=nested, args=(20, f), name="%s-%d" % (n, i))
            t.daemon = True
            t.start()

def nested(depth, f, *args):
    # Each frame refers to a few objects, as real code's do.
    here = [depth, "frame %d" % depth, {"depth": depth}, threading.current_thread()]
    if depth > 0:
        return nested(depth - 1, f, *args)
    return f(*args)

scenario = sys.argv[1]
{"rlocks": lambda: two(threading.RLock), "locks": lambda: two(threading.Lock),
 "three": three, "join": join, "condition": condition, "queue": getter,
 "idle": idle, "child": child, "gil": gil, "socket": sock, "ranked": ranked,
 "import": imports, "ten": ten,
 "select": selects}[scenario]()
while "t1" not in truth:
    time.sleep(0.01)
time.sleep(0.3)
truth["main"] = _nid()
sys.stdout.write("READY " + json.dumps(truth) + "\n")
sys.stdout.flush()
while True:
    time.sleep(100)
