"""Known answer for `kiln report --by state`: two threads for SECONDS of
wall time (default 1.5).
  spinner  a pure-Python loop: Python code, holding the GIL
  hasher   sha256 of a 16 MiB buffer again and again: hashlib releases the
           GIL while it hashes (native code), then wants it back for the
           next call (waiting for the GIL while spinner holds it: up to the
           5 ms switch interval each time)
Prints "spinner TID" and "hasher TID" (native thread ids) first.
Known facts: spinner's samples are Python; hasher's are native, the rest
waiting for the GIL (or, briefly, Python).
  usage: py_gil_split.py [SECONDS]"""
import hashlib, sys, threading, time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
end = time.monotonic() + SECONDS
big = b"k" * (16 << 20)

def spinner():
    x = 0
    while time.monotonic() < end:
        for i in range(1000):
            x += i * i

def hasher():
    while time.monotonic() < end:
        hashlib.sha256(big).digest()

ts = [threading.Thread(target=spinner, name="spinner"), threading.Thread(target=hasher, name="hasher")]
for t in ts:
    t.start()
time.sleep(0.01)
print("spinner", ts[0].native_id, flush=True)
print("hasher", ts[1].native_id, flush=True)
for t in ts:
    t.join()
