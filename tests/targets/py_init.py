"""Class instantiation in a loop: Builder.__init__ does the work.
Known: on every CPython, the stack under main is main;Builder.__init__,
with no frame named plain __init__ between them (3.13 runs an interpreter
shim frame there, _Py_InitCleanup, whose name and file are "__init__").
usage: py_init.py SECONDS"""
import sys, time

class Builder:
    def __init__(self, n):
        x = 0
        for i in range(n):
            x += i
        self.x = x

def main():
    end = time.process_time() + (float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    while time.process_time() < end:
        Builder(2000)

if __name__ == "__main__":
    main()
