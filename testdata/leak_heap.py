# leak_heap.py: builds a big heap of objects the garbage collector tracks
# (Python 2.7 and 3.x). The e2e tests put it in front of heartbeat.py, so
# the target has the heap and a heartbeat thread.
#
# objects=N in sys.argv (default 5000000) sets the number of one-element
# lists kept in the global HEAP; a full collection runs after, so the
# census sees a settled heap.
import gc as _heap_gc
import sys as _heap_sys


def _heap_build():
    n = 5000000
    for a in _heap_sys.argv[1:]:
        if a.startswith("objects="):
            n = int(a.split("=", 1)[1])
    heap = [[i] for i in range(n)]
    _heap_gc.collect()
    return heap


HEAP = _heap_build()
