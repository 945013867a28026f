# Lock objects in known states, for TestLockLayoutsLive: prints READY and
# a JSON object of their addresses and the main thread's ident.
import sys, threading, json, time
try:
    import thread as _thread
except ImportError:
    import _thread
free = threading.Lock()
held = threading.Lock()
held.acquire()
rfree = threading.RLock()
rheld = threading.RLock()
rheld.acquire()
rheld.acquire()
# An RLock held by another thread, which then waits forever.
rother = threading.RLock()
ev = threading.Event()
other = {}
def hold():
    rother.acquire()
    other["ident"] = _thread.get_ident()
    ev.wait()
t = threading.Thread(target=hold)
t.daemon = True
t.start()
while "ident" not in other:
    time.sleep(0.01)
print("READY " + json.dumps({
    "free": id(free), "held": id(held), "rfree": id(rfree), "rheld": id(rheld),
    "rother": id(rother), "main": _thread.get_ident(), "other": other["ident"]}))
sys.stdout.flush()
while True:
    time.sleep(100)
