"""Two Python threads doing different work: thread "alpha" runs spin_alpha,
thread "beta" runs spin_beta, each for SECONDS of its own CPU time (they
share the GIL). Known: with --threads, spin_alpha's samples are all in one
thread and spin_beta's in the other.
   python3 py_threads.py [SECONDS]   (default 0.5)"""
import sys, threading, time

def spin(sec):
    end = time.thread_time() + sec
    n = 0
    while time.thread_time() < end:
        n += 1
    return n

def spin_alpha(sec): return spin(sec)
def spin_beta(sec): return spin(sec)

if __name__ == "__main__":
    sec = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    a = threading.Thread(target=spin_alpha, args=(sec,), name="alpha")
    b = threading.Thread(target=spin_beta, args=(sec,), name="beta")
    a.start(); b.start(); a.join(); b.join()
    print("py_threads done")
