#!/usr/bin/env python3
"""Write a kiln profile (format v1, docs/file-format.md) with N distinct
random stacks over a pool of function names: the flamegraph's stress input.
usage: gen_profile.py OUT N"""
import json, random, struct, sys, zlib

out, n = sys.argv[1], int(sys.argv[2])
r = random.Random(5)
buf = bytearray(b"KILNPROF" + struct.pack("<II", 1, 16))

def rec(t, payload):
    buf.extend(struct.pack("<HHII", t, 0, len(payload), zlib.crc32(payload) & 0xffffffff))
    buf.extend(payload)

def s(x):
    b = x.encode()
    return struct.pack("<H", len(b)) + b

rec(1, json.dumps({"kind": "profile", "program": "synthetic", "start_ns": 0, "frequency": 999}).encode())
rec(5, struct.pack("<IBI", 0, 0, 0) + s("/bin/synthetic") + s(""))
NF = 3000
for i in range(NF):
    rec(6, struct.pack("<IIQB", i, 0, 0x1000 + 16 * i, 1))
    rec(7, struct.pack("<IH", i, 1) + s("function_%04d_%s" % (i, "x" * (i % 23))) + s("src/file%d.c" % (i % 50)) + struct.pack("<IB", i % 900, 0))
counts = bytearray()
for sid in range(n):
    depth = r.randint(3, 40)
    # a random walk down a tree with 5 children a node: stacks share
    # prefixes as real ones do, so many frames are wide enough to draw
    locs, cur = [], r.randrange(4)
    for _ in range(depth):
        locs.append(cur)
        cur = (cur * 5 + 1 + min(int(r.expovariate(0.9)), 4)) % NF
    locs.reverse()  # leaf first
    rec(8, struct.pack("<IHH", sid, 0, depth) + b"".join(struct.pack("<I", l) for l in locs))
    counts += struct.pack("<IIIBQ", 1, 1, sid, 0, r.randint(1, 50))
    if (sid + 1) % 20000 == 0 or sid == n - 1:
        k = len(counts) // 21
        rec(9, struct.pack("<I", k) + bytes(counts))
        counts = bytearray()
rec(10, struct.pack("<QQQ", 10**9, 0, 0))
open(out, "wb").write(buf)
