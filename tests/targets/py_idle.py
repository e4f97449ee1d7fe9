"""A Python thread that sleeps beside one that works, for wall-clock
sampling: the thread "idler" waits in idle_wait (time.sleep), the main
thread spins in busy. Known: with --wall, the idler's samples are under
idle_wait, the main thread's under busy.
   python3 py_idle.py [SECONDS]   (default 1)"""
import sys, threading, time

def idle_wait(sec):
    end = time.monotonic() + sec
    while time.monotonic() < end:
        time.sleep(0.01)

def busy(sec):
    end = time.monotonic() + sec
    n = 0
    while time.monotonic() < end:
        n += 1
    return n

if __name__ == "__main__":
    sec = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    t = threading.Thread(target=idle_wait, args=(sec,), name="idler")
    t.start()
    busy(sec)
    t.join()
    print("py_idle done")
