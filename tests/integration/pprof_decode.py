#!/usr/bin/env python3
"""An independent reader of pprof's profile.proto (wire format decoded by
hand, no kiln code): checks that the cpu samples match the folded export."""
import gzip, sys
from collections import defaultdict

def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1
        v |= (c & 0x7f) << s; s += 7
        if c < 0x80:
            return v, i

def fields(b):
    i, out = 0, []
    while i < len(b):
        k, i = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 2:
            n, i = varint(b, i); v = b[i:i + n]; i += n
        elif w == 1:
            v = b[i:i + 8]; i += 8
        elif w == 5:
            v = b[i:i + 4]; i += 4
        else:
            raise ValueError("wire type %d" % w)
        out.append((f, w, v))
    return out

def packed(v, w):
    if w == 0:
        return [v]
    r, i = [], 0
    while i < len(v):
        x, i = varint(v, i); r.append(x)
    return r

data = gzip.open(sys.argv[1]).read()
top = fields(data)
strings = [v.decode() for f, w, v in top if f == 6]
types = []
for f, w, v in top:
    if f == 1:
        d = {ff: vv for ff, ww, vv in fields(v)}
        types.append(strings[d.get(1, 0)])
funcs = {}
for f, w, v in top:
    if f == 5:
        d = {ff: vv for ff, ww, vv in fields(v)}
        funcs[d[1]] = strings[d.get(2, 0)]
locs = {}
for f, w, v in top:
    if f == 4:
        fl = fields(v); lid = [vv for ff, ww, vv in fl if ff == 1][0]
        lines = []
        for ff, ww, vv in fl:
            if ff == 4:
                ld = {a: b for a, _, b in fields(vv)}
                lines.append(funcs[ld[1]])
        locs[lid] = lines
ci = types.index("cpu") if "cpu" in types else types.index("wall") if "wall" in types else 0
stacks = defaultdict(int)
for f, w, v in top:
    if f == 2:
        ids, vals = [], []
        for ff, ww, vv in fields(v):
            if ff == 1: ids += packed(vv, ww)
            if ff == 2: vals += packed(vv, ww)
        if vals[ci]:
            names = []
            for lid in reversed(ids):
                names += list(reversed(locs[lid]))
            stacks[";".join(names)] += vals[ci]
want = defaultdict(int)
for line in open(sys.argv[2]):
    s, n = line.rsplit(" ", 1)
    want[s] += int(n)
assert sum(stacks.values()) == sum(want.values()), (sum(stacks.values()), sum(want.values()))
assert stacks == want, "stacks differ"
print("pprof: %d samples in %d stacks, sample types %s" % (sum(stacks.values()), len(stacks), types))
