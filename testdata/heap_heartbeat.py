# heap_heartbeat.py: heartbeat.py in front of a 1-million-object heap
# (Python 2.7, 3.x). The bench's leak rows run on it.
#
# usage: heap_heartbeat.py [objects=N] [grow=N] [period=SECONDS]
#
# Builds N (default 1000000) small objects kept alive by the global HEAP,
# in groups of four: a Node instance (with an instance __dict__) holding a
# one-element list, a one-entry dict and a string. Before Python 3.11 each
# instance's __dict__ is a fifth object the garbage collector tracks; the
# strings are not tracked. A full collection then settles the heap, and
# heartbeat.py (next to this file) takes over: same commands, same output.
# With grow=N the main thread adds N one-entry dicts per second to the
# global CACHE, all allocated on one line of leak(): the growth the leak
# tools must find; the commands are then read by a "commands" thread. (A
# main thread that runs Python every 0.1 s is also what sys.remote_exec,
# which memray attach uses on 3.14, needs.)
import gc
import threading
import time

import heartbeat


class Node(object):
    pass


def build(n):
    heap = []
    for i in range(n // 4):
        node = Node()
        node.items = [i]
        node.meta = {"i": i}
        node.name = "node-%d" % i
        heap.append(node)
    gc.collect()
    return heap


HEAP = build(heartbeat.int_arg("objects", 1000000))
CACHE = []


def leak(per_second, commands):
    while commands.is_alive():
        for i in range(per_second // 10):
            CACHE.append({"leaked": i})  # the allocating line
        time.sleep(0.1)


if __name__ == "__main__":
    grow = heartbeat.int_arg("grow", 0)
    if grow:
        t = threading.Thread(target=heartbeat.main, name="commands")
        t.daemon = True
        t.start()
        leak(grow, t)
    else:
        heartbeat.main()
