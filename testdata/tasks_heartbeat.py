# tasks_heartbeat.py: heartbeat.py in front of an asyncio loop with many
# tasks (Python 3.7+). The bench's tasks rows run on it.
#
# usage: tasks_heartbeat.py [tasks=N] [period=SECONDS]
#
# A thread named "loop" runs an event loop with N (default 1000) tasks,
# each sleeping an hour two coroutines deep, in groups of ten gathered by
# a parent task; then heartbeat.py (next to this file) takes over on the
# main thread: same commands, same output.
import asyncio
import threading

import heartbeat


async def leaf():
    await asyncio.sleep(3600)


async def worker():
    await leaf()


async def group(k):
    await asyncio.gather(*[asyncio.ensure_future(worker()) for _ in range(k)])


def run(n, ready):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for _ in range(n // 11):  # a parent and its ten children
        loop.create_task(group(10))
    for _ in range(n % 11):
        loop.create_task(leaf())
    loop.call_soon(ready.set)
    loop.run_forever()


if __name__ == "__main__":
    ready = threading.Event()
    t = threading.Thread(target=run, args=(heartbeat.int_arg("tasks", 1000), ready), name="loop")
    t.daemon = True
    t.start()
    ready.wait()
    heartbeat.main()
