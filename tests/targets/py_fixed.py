"""A fixed amount of pure-Python work (for CPU overhead: its wall time
grows with whatever a profiler costs it): fib_loop computes Fibonacci
numbers iteratively, word_count counts words in a generated text.
   python3 py_fixed.py [ROUNDS]   (default 20: about 2 s)"""
import sys

def fib_loop(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, (a + b) % 1000003
    return a

def word_count(words):
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return len(counts)

def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    words = ["w%d" % (i % 997) for i in range(200000)]
    total = 0
    for _ in range(rounds):
        total += fib_loop(400000)
        total += word_count(words)
    print("py_fixed", total)

if __name__ == "__main__":
    main()
