# asyncio_tasks.py: asyncio tasks for `pyglass tasks` tests (3.7+).
#
# usage: asyncio_tasks.py [many=N] [pure]
#
# pure runs asyncio without its C module: pure-Python Task and Future.
# Sets up, on the main thread's loop: nested gather, a gather of 12 tasks,
# shield, wait_for, a
# task waiting on an asyncio.Lock another task holds, an await cycle of two
# tasks, a task in loop.sock_recv and one reading a StreamReader (each on a
# socketpair nobody writes to), a TaskGroup (3.11+), an Event, a Queue, a
# Condition, N extra sleeping tasks, a task finished with an exception; a
# second loop, of a class of the program's own (CustomLoop, as uvloop's
# is), in a thread named "loop-2" with its own tasks; and a third loop, in "loop-3", blocked by
# its only task ("blocker", in time.sleep: the task running right now). Then it prints its ground truth, computed
# with asyncio's own introspection, as one line "TRUTH <json>":
#   {"tasks": [{"id", "name", "state", "running", "thread", "exception", "loop", "stack":
#     [{"function", "file", "line"}], "awaits": [id...], "sleep_when"}],
#    "monotonic"}
# where stack follows the task's coroutine through cr_await, and awaits are
# the tasks behind the task's _fut_waiter (itself a task, or the children of
# a gather) and, on 3.14+, the tasks whose _asyncio_awaited_by names it;
# sleep_when is, for a task in asyncio.sleep, its TimerHandle's _when, and
# monotonic is time.monotonic() when the line is written. Then "READY pid=P version=X.Y.Z"; the loops then block.
import sys

MANY = 0
for a in sys.argv[1:]:
    if a.startswith("many="):
        MANY = int(a[5:])
    elif a == "pure":
        sys.modules["_asyncio"] = None  # pure-Python tasks and futures

import asyncio
import json
import os
import socket
import threading
import time

HAS_NAME = sys.version_info >= (3, 8)


def fname(code):
    return getattr(code, "co_qualname", code.co_name)


def coro_stack(coro):
    out = []
    seen = 0
    while coro is not None and seen < 256:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        out.append({"function": fname(frame.f_code), "file": frame.f_code.co_filename, "line": frame.f_lineno})
        nxt = getattr(coro, "cr_await", None)
        if nxt is None:
            nxt = getattr(coro, "gi_yieldfrom", None)
        if nxt is None or type(nxt).__name__ not in ("coroutine", "generator"):
            break
        if type(coro).__name__ != "coroutine":
            break
        coro = nxt
    return out


def sleep_when(coro):
    # The deadline of a task suspended in asyncio.sleep: its TimerHandle's
    # _when (loop.time(), time.monotonic()), None otherwise.
    while getattr(coro, "cr_await", None) is not None and type(coro.cr_await).__name__ == "coroutine":
        coro = coro.cr_await
    frame = getattr(coro, "cr_frame", None)
    if frame is None or frame.f_code.co_name != "sleep" or not frame.f_code.co_filename.endswith("tasks.py"):
        return None
    return frame.f_locals["h"]._when


def group_children(task):
    # A task in TaskGroup.__aexit__ awaits the group's tasks (3.11+).
    coro = task._coro
    while getattr(coro, "cr_await", None) is not None and type(coro.cr_await).__name__ == "coroutine":
        coro = coro.cr_await
    frame = getattr(coro, "cr_frame", None)
    if frame is None or not fname(frame.f_code).startswith("TaskGroup."):
        return []
    return list(frame.f_locals["self"]._tasks)


def awaited_tasks(task):
    if sys.version_info >= (3, 11) and not task.done() and group_children(task):
        return group_children(task)
    w = getattr(task, "_fut_waiter", None)
    if w is None:
        return []
    if isinstance(w, asyncio.Task):
        return [w]
    if type(w).__name__ == "_GatheringFuture":
        return [c for c in w._children if isinstance(c, asyncio.Task)]
    return []


def native_id():
    return threading.get_native_id() if hasattr(threading, "get_native_id") else 0


LOOP_THREADS = {}  # id(loop) -> native id of the thread running it


def truth(tasks, running=False):
    # 3.14+: asyncio records who awaits a task (gather, TaskGroup,
    # awaits of a task) in _asyncio_awaited_by; those are edges too.
    extra = {}
    for t in tasks:
        for parent in getattr(t, "_asyncio_awaited_by", None) or ():
            if isinstance(parent, asyncio.Task) and not t.done():
                extra.setdefault(id(parent), []).append(t)
    out = []
    for t in tasks:
        state = "pending"
        exc = ""
        if t.cancelled():
            state = "cancelled"
        elif t.done():
            state = "done"
            if t.exception() is not None:
                exc = type(t.exception()).__name__
        out.append({
            "id": "%#x" % id(t),
            "name": t.get_name() if HAS_NAME else "",
            "state": state,
            "running": running,
            "thread": LOOP_THREADS.get(id(t._loop), 0) if state == "pending" else 0,
            "exception": exc,
            "loop": "%#x" % id(t._loop),
            "stack": coro_stack(t._coro) if state == "pending" else [],
            "awaits": sorted(set("%#x" % id(c) for c in awaited_tasks(t) + extra.get(id(t), []))),
            "sleep_when": sleep_when(t._coro) if state == "pending" else None,
        })
    return out


def create(loop, coro, name):
    t = loop.create_task(coro)
    if HAS_NAME:
        t.set_name(name)
    return t


async def leaf_sleep():
    await asyncio.sleep(3600)


async def middle():
    await asyncio.gather(create(asyncio.get_event_loop(), leaf_sleep(), "gather-inner-1"),
                         create(asyncio.get_event_loop(), leaf_sleep(), "gather-inner-2"))


async def outer_gather():
    loop = asyncio.get_event_loop()
    await asyncio.gather(create(loop, middle(), "gather-middle"), create(loop, leaf_sleep(), "gather-leaf"))


async def wide_gather():
    loop = asyncio.get_event_loop()
    await asyncio.gather(*[create(loop, leaf_sleep(), "wide-%d" % i) for i in range(12)])


async def shielded():
    await asyncio.shield(create(asyncio.get_event_loop(), leaf_sleep(), "shield-inner"))


async def waits_for():
    await asyncio.wait_for(create(asyncio.get_event_loop(), leaf_sleep(), "wait-for-inner"), 3600)


async def holder(lock, held):
    async with lock:
        held.set()
        await asyncio.sleep(3600)


async def lock_waiter(lock, held):
    await held.wait()
    async with lock:
        pass


async def event_waiter(ev):
    await ev.wait()


async def queue_getter(q):
    await q.get()


async def condition_waiter(cond):
    async with cond:
        await cond.wait()


class CustomLoop(asyncio.SelectorEventLoop):
    # A loop class of the program's own (as uvloop's is): its tasks are
    # found through the registries all the same.
    pass


async def socket_reader(loop, sock):
    await loop.sock_recv(sock, 1)


async def stream_reader(sock):
    reader, writer = await asyncio.open_connection(sock=sock)
    kept_objects.append(writer)
    await reader.read(1)


cycle_tasks = {}


async def cycle_member(me, other):
    while other not in cycle_tasks:
        await asyncio.sleep(0)
    await cycle_tasks[other]


async def group():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(leaf_sleep(), name="group-child-1")
        tg.create_task(leaf_sleep(), name="group-child-2")


async def fails():
    raise ValueError("finished with an exception")


keep = []  # tasks kept for the truth
kept_objects = []  # other objects kept alive


async def setup(loop, main_loop):
    if main_loop:
        create(loop, outer_gather(), "gather-outer")
        create(loop, shielded(), "shield-outer")
        create(loop, wide_gather(), "wide-gather")
        create(loop, waits_for(), "wait-for-outer")
        lock, held = asyncio.Lock(), asyncio.Event()
        create(loop, holder(lock, held), "lock-holder")
        create(loop, lock_waiter(lock, held), "lock-waiter")
        create(loop, event_waiter(asyncio.Event()), "event-waiter")
        create(loop, queue_getter(asyncio.Queue()), "queue-getter")
        create(loop, condition_waiter(asyncio.Condition()), "condition-waiter")
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        kept_objects.extend([b, d])
        a.setblocking(False)
        create(loop, socket_reader(loop, a), "socket-reader")
        create(loop, stream_reader(c), "stream-reader")
        cycle_tasks["a"] = create(loop, cycle_member("a", "b"), "cycle-a")
        cycle_tasks["b"] = create(loop, cycle_member("b", "a"), "cycle-b")
        if sys.version_info >= (3, 11):
            create(loop, group(), "taskgroup")
        for i in range(MANY):
            create(loop, leaf_sleep(), "many-%d" % i)
        f = create(loop, fails(), "failed")
        keep.append(f)
    else:
        create(loop, leaf_sleep(), "loop2-sleeper")
        create(loop, outer_gather(), "loop2-gather")
    for _ in range(20):
        await asyncio.sleep(0)


def all_tasks(loop):
    if hasattr(asyncio, "all_tasks"):
        return asyncio.all_tasks(loop)
    return asyncio.Task.all_tasks(loop)


def main():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    LOOP_THREADS[id(loop)] = native_id()
    loop.run_until_complete(setup(loop, True))
    ready = threading.Event()
    loop2 = CustomLoop()

    def second():
        LOOP_THREADS[id(loop2)] = native_id()
        asyncio.set_event_loop(loop2)
        loop2.run_until_complete(setup(loop2, False))
        ready.set()
        loop2.run_forever()

    th = threading.Thread(target=second, name="loop-2")
    th.daemon = True
    th.start()
    ready.wait()
    ts = list(all_tasks(loop)) + keep
    ts2 = loop2.call_soon_threadsafe  # the second loop is idle in select now
    out = truth(ts)
    # The second loop's tasks, read while it sits in select.
    done = threading.Event()
    holder2 = []

    def snap():
        holder2.extend(truth(all_tasks(loop2)))
        done.set()

    ts2(snap)
    done.wait()
    # A third loop whose only task blocks it (time.sleep inside a
    # coroutine): the task its loop is running right now.
    loop3 = asyncio.new_event_loop()
    blocking = threading.Event()
    holder3 = []

    async def blocker():
        entry = truth([asyncio.current_task()], running=True)[0]
        entry["stack"][-1]["line"] = sys._getframe().f_lineno + 3  # time.sleep's line
        holder3.append(entry)
        blocking.set()
        time.sleep(3600)

    def third():
        LOOP_THREADS[id(loop3)] = native_id()
        asyncio.set_event_loop(loop3)
        create(loop3, blocker(), "blocker")
        loop3.run_forever()

    th3 = threading.Thread(target=third, name="loop-3")
    th3.daemon = True
    th3.start()
    blocking.wait()
    sys.stdout.write("TRUTH " + json.dumps({"tasks": out + holder2 + holder3, "monotonic": time.monotonic()}) + "\n")
    sys.stdout.write("READY pid=%d version=%s\n" % (os.getpid(), sys.version.split()[0]))
    sys.stdout.flush()
    loop.run_forever()


main()
