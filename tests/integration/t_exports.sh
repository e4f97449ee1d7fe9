#!/bin/bash
# Exports: folded read by the FlameGraph convention, SVG, speedscope, JSON,
# pprof (decoded independently), and outputs written whole or not at all.
source "$(dirname "$0")/lib.sh"
run_to 60 "$KILN" record -q --heap -o $W/cs.kiln -- $TARGETS/cpu_split 1 >/dev/null || fail record
"$KILN" export $W/cs.kiln --format folded >$W/f || fail folded
awk 'NF < 2 || $NF !~ /^-?[0-9]+$/ { exit 1 }' $W/f || fail "folded line format"
sort -c $W/f || fail "folded lines sorted"
"$KILN" flamegraph $W/cs.kiln -o $W/fg.svg || fail flamegraph
python3 - $W/fg.svg <<'PY' || fail "svg"
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.argv[1]); root = t.getroot(); assert root.tag.endswith('svg')
s = open(sys.argv[1]).read()
assert '<script' in s and 'frame_a' in s and 'cpu_split.c' in s
ns = {'s': 'http://www.w3.org/2000/svg'}
g = root.findall('.//s:g[@id="frames"]/s:g', ns)
assert len(g) > 10
titles = [x.find('s:title', ns).text for x in g]
fa = [t for t in titles if t.startswith('frame_a (')]
assert fa and '%' in fa[0], fa
PY
ok "svg"
"$KILN" flamegraph $W/cs.kiln --metric alloc_bytes --inverted -o $W/heap.svg || fail "heap svg"
grep -q 'INVERTED = true' $W/heap.svg || fail "inverted"
"$KILN" export $W/cs.kiln --format speedscope -o $W/ss.json || fail speedscope
ss_total=$(python3 - $W/ss.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["$schema"] == "https://www.speedscope.app/file-format-schema.json"
fr = d["shared"]["frames"]; names = [f["name"] for f in fr]
assert "frame_a" in names
for p in d["profiles"]:
    assert p["type"] == "sampled" and len(p["samples"]) == len(p["weights"])
    assert p["endValue"] == sum(p["weights"])
    assert all(0 <= i < len(fr) for s in p["samples"] for i in s)
# in time order (the windows): a stack comes back as the run goes on, so
# there are more samples than distinct stacks
p = d["profiles"][0]
assert len(p["samples"]) > len(set(map(tuple, p["samples"]))), "samples not in time order"
print(sum(q["endValue"] for q in d["profiles"]))
PY
) || fail "speedscope schema"
eq $ss_total $(total $(folded $W/cs.kiln cpu)) "speedscope's samples against the cpu total"
ok "speedscope (samples in time order)"
"$KILN" export $W/cs.kiln --format json -o $W/all.json || fail json
python3 - $W/all.json <<'PY' || fail "json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == "kiln-json" and "cpu" in d["metrics"] and "alloc_bytes" in d["metrics"]
assert sum(c.get("cpu", 0) for c in d["cells"]) == d["samples"]
for c in d["cells"]:
    assert 0 <= c["stack"] < len(d["stacks"])
PY
ok "json"
"$KILN" export $W/cs.kiln --format pprof -o $W/p.pb.gz || fail pprof
python3 "$(dirname "$0")/pprof_decode.py" $W/p.pb.gz $W/f || fail "pprof decode"
ok "pprof"
# no half-written output: a failing export leaves nothing
"$KILN" export $W/cs.kiln --format folded -o /nonexistent-dir/out 2>/dev/null; eq $? 1 "unwritable output"
"$KILN" export $W/nothere --format folded -o $W/never 2>/dev/null; eq $? 1 "missing input"
[ ! -e $W/never ] || fail "output left behind"
# closed pipe: exit 0, no noise. The output is megabytes, far more than a
# pipe holds, so kiln is still writing when the reader has gone (EPIPE).
"$(dirname "$KILN")/gen_profile" $W/big.kiln 20000 || fail "gen_profile"
for cmd in "report $W/big.kiln --limit 0 --by stack" "export $W/big.kiln --format folded" "export $W/big.kiln --format svg"; do
  # (LeakSanitizer cannot run under ptrace: off for this one command)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -e trace=write -o $W/st.txt $KILN $cmd 2>$W/e | head -c 100 >/dev/null; rc=${PIPESTATUS[0]}
  eq $rc 0 "kiln ${cmd%% *} | head: exit status"
  [ ! -s $W/e ] || fail "noise on a closed pipe ($cmd): $(cat $W/e)"
  grep -q 'EPIPE' $W/st.txt || fail "kiln ${cmd%% *} | head never met EPIPE: the test proves nothing"
done
ok "outputs"

# a profile read from standard input (-), through a pipe as from a file
"$KILN" record -q -o - -- $TARGETS/cpu_split 0.3 2>/dev/null | "$KILN" export - --format folded -o $W/pipe.folded \
  || fail "kiln record -o - | kiln export -: exit $?"
[ "$(total $W/pipe.folded)" -gt 0 ] || fail "nothing read from the pipe"
"$KILN" export - --format folded <$W/cs.kiln >$W/in.folded || fail "export - <file"
"$KILN" export $W/cs.kiln --format folded >$W/file.folded || fail "export file"
cmp -s $W/in.folded $W/file.folded || fail "export - <file differs from export file"
"$KILN" report - </dev/null 2>$W/e; eq $? 1 "report - from /dev/null"
[ "$(wc -l <$W/e)" = 1 ] && grep -q '^kiln report: -: standard input is not a file or a pipe' $W/e || fail "report - </dev/null: $(cat $W/e)"
ok "standard input: kiln record -o - | kiln export - ($(total $W/pipe.folded) samples); export - <file = export file"
