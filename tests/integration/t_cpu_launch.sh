#!/bin/bash
# CPU profiling of launched programs: the known split of cpu_split, whole
# stacks, the sample rate, four threads a quarter each under thread frames.
source "$(dirname "$0")/lib.sh"
run_to 60 "$KILN" record -q -o $W/cs.kiln -- $TARGETS/cpu_split 2 >/dev/null || fail "record cpu_split"
F=$(folded $W/cs.kiln cpu) || fail "export"
a=$(share $F '^frame_a$'); b=$(share $F '^frame_b$'); c=$(share $F '^frame_c$')
within $a 60 3 && within $b 30 3 && within $c 10 2 || fail "shares $a/$b/$c"
ok "cpu_split $a/$b/$c"
grep -q '^_start;__libc_start_main[^;]*;__libc_start_call_main;main;mid;deep1;deep2;frame_c;spin' $F || fail "no whole stack to frame_c"
ok "whole stack main;mid;deep1;deep2;frame_c;spin"
n=$(total $F); [ "$n" -ge 1500 ] || fail "$n samples in 2 s"
ok "$n samples"
# every sample unwinds to its root (no truncation on these shallow stacks):
# the program's _start, or the dynamic loader's _dl_start for a sample taken
# before the program began (the loader's own start-up, longer under the
# sanitizers' runtime on a loaded host: 22 of 2,007 seen once)
s=$(share $F '^(_start|_dl_start)$'); within $s 100 0.5 || fail "only $s% unwind to _start (or the loader's _dl_start)"
u=$(share $F '^_start$'); ok "$s% unwind to their root ($u% to _start)"
# report: header and the table
"$KILN" report $W/cs.kiln --limit 5 >$W/rep || fail "report"
grep -q '^# kiln profile of .*cpu_split 2' $W/rep || fail "report header"
grep -qE '[0-9]+ samples, 1 process, 1 thread' $W/rep || fail "report counts: $(sed -n 2p $W/rep)"
grep -q 'frame_a' $W/rep || fail "report names frame_a"
"$KILN" report $W/cs.kiln --json --limit 0 >$W/rep.json || fail "report --json"
python3 - $W/rep.json <<'PY' || fail "report --json numbers"
import json, sys
d = json.load(open(sys.argv[1]))
rows = {r["name"]: r for r in d["rows"]}
assert d["metric"] == "cpu" and d["total"] > 1500
assert rows["main"]["total"] >= 0.99 * d["total"], "main's total is everything (but a sample in the dynamic linker's start-up)"
assert abs(rows["frame_a"]["total_pct"] - 60) < 3
assert rows["spin"]["self"] >= 0.95 * d["total"]
assert rows["frame_a"]["file"].endswith("cpu_split.c") and rows["frame_a"]["line"] > 0
PY
ok "report --json"
# threads: a quarter each, one thread frame per worker
run_to 60 "$KILN" record -q -o $W/th.kiln -- $TARGETS/threads 2 >/dev/null || fail "record threads"
F=$(folded $W/th.kiln cpu --threads) || fail "export --threads"
for w in 0 1 2 3; do
  s=$(share $F "^worker_$w\$"); within $s 25 7 || fail "worker_$w $s%"
  k=$(grep -E "(^|;)worker_$w;" $F | cut -d';' -f1 | sort -u | wc -l)
  [ "$k" -eq 1 ] || fail "worker_$w under $k thread frames"
done
head -1 $F | grep -qE '^threads-[0-9]+;' || fail "thread frame first: $(head -1 $F)"
ok "threads a quarter each, one thread frame each"
# --tid filter: one worker's thread holds only that worker
tid=$(grep -E ';worker_2;' $F | head -1 | cut -d';' -f1 | sed 's/.*-//')
"$KILN" export $W/th.kiln --format folded --tid $tid >$W/one.f || fail "--tid"
s=$(share $W/one.f '^worker_2$'); within $s 100 1 || fail "--tid $tid holds $s% worker_2"
ok "--tid"
