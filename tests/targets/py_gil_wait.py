"""Known answer for `kiln dump`'s GIL state: the main thread holds the GIL in
one long C call (sum over a range: no eval-loop checks, so it never lets
go), a thread named waiter wants it back after each 1 ms sleep.
  py_gil_wait.py: prints "ready", then sums for a long time (kill it).
Known facts: dumped, the main thread is running, the waiter is asleep in a
futex waiting for the GIL, under waiter()."""
import threading, time

def waiter():
    while True:
        time.sleep(0.001)

threading.Thread(target=waiter, name="waiter", daemon=True).start()
time.sleep(0.2)
print("ready", flush=True)
sum(range(10**11))
