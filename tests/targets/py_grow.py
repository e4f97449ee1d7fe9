"""A running Python program whose heap grows on request, for snapshots.
   python3 py_grow.py: prints "ready PID", then each SIGUSR1 makes grow()
   keep 100 more bytes(1000) objects (each one malloc of exactly 1,033 B:
   a bytes object's 33-byte header and its data; above 512 B, so malloc
   whatever the allocator setting); SIGTERM ends it.
Known: between two snapshots with k requests in between, live bytes under
grow() rise by exactly k x 103,300."""
import os, signal, sys, time

KEEP = [None] * 200_000   # made at start: storing into it allocates nothing
n = 0
pending = 0

def grow():
    global n
    for _ in range(100):
        KEEP[n] = bytes(1000)
        n += 1

def on_usr1(sig, frame):
    global pending
    pending += 1

if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
    print("ready", os.getpid(), flush=True)
    while True:
        while pending:
            pending -= 1
            grow()
            print("grown", n, flush=True)
        time.sleep(0.005)
