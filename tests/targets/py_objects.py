"""Known numbers of small and large Python objects, kept to the end:
  keep_small: 100,000 tuples of 3 (each with a str), pymalloc-sized
  keep_big:   30 bytearrays of 200,000 B (above pymalloc's 512 B)
  churn:      50,000 small lists made and dropped (temporaries)
With "tracemalloc" as argument it runs under tracemalloc and
prints, for each of keep_small, keep_big and the whole, the bytes its
allocations still hold at the end (tracemalloc's "current" and "peak"):
what kiln's leak and peak figures are compared with.
usage: py_objects.py [tracemalloc]"""
import sys

small, big = [], []

def keep_small(n):
    for i in range(n):
        small.append(("item", i, "x" * (i % 40)))

def keep_big(n):
    for i in range(n):
        big.append(bytearray(200_000))

def churn(n):
    for i in range(n):
        t = [i, i + 1, i + 2]
        del t

def main():
    keep_small(100_000)
    keep_big(30)
    churn(50_000)

if __name__ == "__main__":
    traced = len(sys.argv) > 1 and sys.argv[1] == "tracemalloc"
    if traced:
        import tracemalloc
        tracemalloc.start(1)  # each allocation's innermost Python frame is the function's
    main()
    if traced:
        snap = tracemalloc.take_snapshot()
        cur, peak = tracemalloc.get_traced_memory()
        stats = snap.statistics("lineno")
        def under(name):
            return sum(st.size for st in stats if st.traceback[0].filename == __file__ and
                       st.traceback[0].lineno in LINES[name])
        LINES = {f.__name__: range(f.__code__.co_firstlineno, f.__code__.co_firstlineno + 3)
                 for f in (keep_small, keep_big)}
        print("keep_small", under("keep_small"))
        print("keep_big", under("keep_big"))
        print("current", cur, "peak", peak)
