# Fixture for the thread tests: two named sleeping threads and one that
# spins holding the GIL; prints every thread's name, ident and native id.
import json
import sys
import threading
import time

try:
    xrange
except NameError:
    xrange = range


def sleeper():
    while True:
        time.sleep(60)


go = threading.Event()


def spin():
    # Spin only once READY is out: 2.7's GIL would starve the main thread.
    go.wait()
    while True:
        sum(xrange(10 ** 7))


threads = [threading.Thread(target=sleeper, name=n) for n in ("worker-a", "worker-b")]
threads.append(threading.Thread(target=spin, name="spinner"))
for t in threads:
    t.daemon = True
    t.start()
time.sleep(0.2)
info = {}
for t in threading.enumerate():
    info[t.name] = [t.ident, getattr(t, "native_id", 0) or 0]
print("READY " + json.dumps({"threads": info, "main": threading.current_thread().ident}))
sys.stdout.flush()
go.set()
while True:
    time.sleep(60)
