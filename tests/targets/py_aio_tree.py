"""Known answer for `kiln dump` of an asyncio program: a loop whose tasks all
wait, for 30 s, in known places.
  fetcher   fetch() awaits asyncio.sleep(30)
  gatherer  gather_two() awaits a gather of two tasks, child-a and child-b,
            each in leaf() awaiting asyncio.sleep(30)
  the main task awaits its TaskGroup (3.10: a gather of the two)
Prints "ready" once every task is suspended.
Known facts: the loop's thread is idle in the selector; its suspended tasks
are Task fetcher (fetch > sleep), Task gatherer (gather_two > gather),
Task child-a and Task child-b (leaf > sleep), and the main task."""
import asyncio

async def leaf():
    await asyncio.sleep(30)

async def fetch():
    await asyncio.sleep(30)

async def gather_two():
    loop = asyncio.get_running_loop()
    a = loop.create_task(leaf(), name="child-a")
    b = loop.create_task(leaf(), name="child-b")
    await asyncio.gather(a, b)

async def main():
    if not hasattr(asyncio, "TaskGroup"):  # 3.10: the same tasks, gathered
        f = asyncio.create_task(fetch(), name="fetcher")
        g = asyncio.create_task(gather_two(), name="gatherer")
        await asyncio.sleep(0.1)
        print("ready", flush=True)
        await asyncio.gather(f, g)
        return
    async with asyncio.TaskGroup() as tg:
        tg.create_task(fetch(), name="fetcher")
        tg.create_task(gather_two(), name="gatherer")
        await asyncio.sleep(0.1)
        print("ready", flush=True)

asyncio.run(main())
