"""An allocation-heavy Python program for overhead measurements: each round
parses and re-serializes a JSON document (dicts, lists, strings, floats),
builds bytes and bytearrays above and below pymalloc's 512-byte limit, and
drops everything.
   python3 py_alloc_heavy.py [ROUNDS]   (default 200)"""
import json, sys

DOC = json.dumps([{"id": i, "name": "item%d" % i, "tags": ["a", "b", "c"][: i % 4],
                   "score": i * 0.25, "blob": "x" * (i % 700)} for i in range(400)])

def parse_round():
    return json.loads(DOC)

def build_round(items):
    out = []
    for it in items:
        out.append(bytearray(len(it["blob"]) + 64))
        out.append(("%s:%s" % (it["name"], it["score"])).encode())
    return out

def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    total = 0
    for _ in range(rounds):
        items = parse_round()
        total += len(build_round(items))
        total += len(json.dumps(items))
    print("py_alloc_heavy", total)

if __name__ == "__main__":
    main()
