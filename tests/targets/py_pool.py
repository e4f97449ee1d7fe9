"""Known answer for following worker processes: a ProcessPoolExecutor of 2
workers under the start method given runs child_work(0.3) 4 times (0.3 s of
CPU each, in the workers), while the parent waits.
  usage: py_pool.py fork|spawn|forkserver
Known facts: child_work runs only in worker processes (none in the parent),
about 1.2 s of CPU in all; each worker is a CPython whose Python frames are
read (child_work under the pool's worker loop)."""
import concurrent.futures, multiprocessing, sys, time

def child_work(sec):
    end = time.process_time() + sec
    x = 0
    while time.process_time() < end:
        x += sum(range(300))
    return x

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else "fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
        list(ex.map(child_work, [0.3] * 4))
    print("py_pool done", ctx.get_start_method())
