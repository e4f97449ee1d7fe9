"""Known answer for --wall's charging of suspended asyncio tasks: two tasks
that only wait, on an otherwise idle loop.
  short  awaits asyncio.sleep(0.5) in nap()
  long   awaits asyncio.sleep(1.0) in nap()
Known facts: each task's wall samples (under "Task NAME") are its life; long
lives twice as long as short (2.0)."""
import asyncio

async def nap(sec):
    await asyncio.sleep(sec)

async def main():
    a = asyncio.create_task(nap(0.5), name="short")
    b = asyncio.create_task(nap(1.0), name="long")
    await asyncio.gather(a, b)

asyncio.run(main())
