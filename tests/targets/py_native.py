"""C extension functions called from Python functions: their native frames
must appear under the Python function that called them.
   compress_work: zlib.compress of 64 KiB, in a loop  (native: zlib's deflate)
   json_work:     json.dumps of a nested structure     (native: the _json encoder)
   python3 py_native.py [SECONDS]   (default 1; half the CPU time each)"""
import json, sys, time, zlib

DATA = bytes(range(256)) * 256
DOC = {"k%d" % i: [i, str(i), {"x": i * 0.5}] for i in range(2000)}

def compress_work(sec):
    end = time.process_time() + sec
    while time.process_time() < end:
        zlib.compress(DATA, 9)

def json_work(sec):
    end = time.process_time() + sec
    while time.process_time() < end:
        json.dumps(DOC)

if __name__ == "__main__":
    total = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    compress_work(total / 2)
    json_work(total / 2)
    print("py_native done")
