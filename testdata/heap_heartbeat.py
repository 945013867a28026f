# heap_heartbeat.py: heartbeat.py in front of a 1-million-object heap
# (Python 2.7, 3.x). The bench's leak rows run on it.
#
# usage: heap_heartbeat.py [objects=N] [period=SECONDS]
#
# Builds N (default 1000000) small objects kept alive by the global HEAP,
# in groups of four: a Node instance (with an instance __dict__) holding a
# one-element list, a one-entry dict and a string. Before Python 3.11 each
# instance's __dict__ is a fifth object the garbage collector tracks; the
# strings are not tracked. A full collection then settles the heap, and
# heartbeat.py (next to this file) takes over: same commands, same output.
import gc

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

if __name__ == "__main__":
    heartbeat.main()
