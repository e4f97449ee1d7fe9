#!/bin/bash
# record --heap --heap-sample: allocations sampled by bytes (Poisson), each
# weighed by the inverse of its chance. Estimates close to the exact
# figures on programs with known answers, what is freed never shown as
# leaked (every sampled block's free is followed, across threads and
# reallocs), blocks far larger than the mean exact, and every output saying
# that its heap figures are estimates. Tolerances are 5 to 8 standard
# deviations of the estimator at these sample counts: a failure is a bias.
source "$(dirname "$0")/lib.sh"

# mt_alloc 2 threads x 5 M pairs: exact first (the known answer), then sampled
run_to 120 "$KILN" record -q --heap --no-cpu -o $W/x.kiln -- $TARGETS/mt_alloc 2 5 >/dev/null || fail "exact record"
XB=$(weight $(folded $W/x.kiln alloc_bytes) '^leaf_[ab]$'); XC=$(weight $(folded $W/x.kiln alloc_count) '^leaf_[ab]$')
eq $XC 10000000 "mt_alloc exact allocations"
for mean in 65536 16K; do
  run_to 60 "$KILN" record -q --heap --no-cpu --heap-sample $mean -o $W/s.kiln -- $TARGETS/mt_alloc 2 5 >/dev/null ||
    fail "record --heap-sample $mean"
  SB=$(weight $(folded $W/s.kiln alloc_bytes) '^leaf_[ab]$'); SC=$(weight $(folded $W/s.kiln alloc_count) '^leaf_[ab]$')
  db=$(awk -v a=$SB -v b=$XB 'BEGIN { printf "%.2f", 100 * (a - b) / b }')
  dc=$(awk -v a=$SC -v b=$XC 'BEGIN { printf "%.2f", 100 * (a - b) / b }')
  within $db 0 5 || fail "--heap-sample $mean: leaf bytes $SB, exact $XB ($db %)"
  within $dc 0 5 || fail "--heap-sample $mean: leaf allocations $SC, exact $XC ($dc %)"
  # everything the workers allocate they free: no estimate of a leak at all
  # (printf's buffer and the threads' TLS are the C library's to keep)
  eq $(weight $(folded $W/s.kiln leak_bytes) '^(leaf_[ab]|work)$') 0 "--heap-sample $mean: mt_alloc's workers leak nothing"
  ok "mt_alloc at --heap-sample $mean: bytes $db %, allocations $dc % of exact; no leak"
done

# leaky: its 8 leaked MiB blocks are far above the mean (chance 1 - e^-256):
# exact; all its leaks (9,609,216 B) within 3 % at a 4 KiB mean
run_to 60 "$KILN" record -q --heap --no-cpu --heap-sample 4096 -o $W/l.kiln -- $TARGETS/leaky >/dev/null || fail "record leaky"
L=$(folded $W/l.kiln leak_bytes); C=$(folded $W/l.kiln leak_count)
eq $(weight $L '^leak_big$') 8388608 "leak_big bytes (blocks far above the mean stand for themselves)"
eq $(weight $C '^leak_big$') 8 "leak_big blocks"
lb=$(total $L); d=$(awk -v a=$lb 'BEGIN { printf "%.2f", 100 * (a - 9609216) / 9609216 }')
within $d 0 3 || fail "leaky: leaked $lb B estimated, 9,609,216 B exact ($d %)"
ok "leaky at 4 KiB: leak_big exact, all leaks $d % of exact"

# frees across threads, reallocs that move blocks while other threads reuse
# the addresses, C++ containers: what is freed is never left as a leak
for prog in "realloc_race 100000" "cxx_threads"; do
  run_to 60 "$KILN" record -q --heap --no-cpu --heap-sample 1K -o $W/r.kiln -- $TARGETS/$prog >/dev/null || fail "record $prog"
  [ "$(total $(folded $W/r.kiln alloc_count))" -gt 100000 ] || fail "$prog: too few allocations estimated"
  eq "$(weight $(folded $W/r.kiln leak_bytes) '^(race_worker|churn_worker.*)$')" 0 "$prog sampled: a false leak"
  grep -q 'no events lost' <("$KILN" report $W/r.kiln) || fail "$prog: events lost"
done
ok "realloc_race and cxx_threads sampled at 1 KiB: no false leak"

# the program's own checks of realloc(p, 0), reallocarray, memalign & co.
run_to 60 "$KILN" record -q --heap --heap-sample 64 -o $W/e.kiln -- $TARGETS/shim_edge >/dev/null 2>$W/err
eq $? 0 "shim_edge sampled: $(cat $W/err)"
ok "shim_edge's own checks hold while sampled"

# every output says the heap figures are estimates; temp_count is not made up
"$KILN" report $W/l.kiln --metric leak_bytes >$W/rep || fail "report"
grep -q '^# heap: SAMPLED (--heap-sample 4.00 KiB).*ESTIMATE' $W/rep || fail "report header: $(grep '# heap' $W/rep)"
grep -q '^# metric leak_bytes (estimated: --heap-sample 4.00 KiB)' $W/rep || fail "table heading: $(grep '# metric' $W/rep)"
grep -q 'temporary' <(grep '^# heap: about' $W/rep) && fail "temporaries claimed in a sampled profile"
"$KILN" report $W/l.kiln --metric cpu | grep -q '^# metric cpu: ' || fail "cpu is exact: no estimate mark"
"$KILN" report $W/l.kiln --metric leak_bytes --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["estimated"] is True and j["heap_sample"] == 4096, j' || fail "report --json"
"$KILN" export $W/l.kiln --format json -o $W/j.json && python3 -c '
import json, sys
assert json.load(open(sys.argv[1]))["heap_sample"] == 4096' $W/j.json || fail "export json"
"$KILN" export $W/l.kiln --format svg --metric leak_bytes -o $W/f.svg && grep -q 'estimated: --heap-sample 4.00 KiB' $W/f.svg ||
  fail "svg subtitle"
"$KILN" export $W/l.kiln --format speedscope --metric leak_bytes -o $W/s.json &&
  grep -q '"name": *"leak_bytes (estimated: --heap-sample 4.00 KiB)' $W/s.json || fail "speedscope name"
"$KILN" export $W/x.kiln --format svg --metric leak_bytes -o $W/fx.svg && grep -q 'estimated' $W/fx.svg &&
  fail "an exact profile marked estimated"
ok "report, JSON, SVG and speedscope say 'estimated'; an exact profile does not"

# attached: the same sampling in a running process
$TARGETS/mt_alloc 1 400 >/dev/null & P=$!
sleep 0.3
run_to 60 "$KILN" record -q --heap --no-cpu --heap-sample 32K -d 0.5 -p $P -o $W/a.kiln 2>$W/err || fail "attach: $(cat $W/err)"
kill $P 2>/dev/null; wait $P 2>/dev/null
"$KILN" report $W/a.kiln --metric alloc_count >$W/rep || fail "report attach"
grep -q '^# heap: SAMPLED (--heap-sample 32.00 KiB)' $W/rep || fail "attach: not said sampled"
[ "$(weight $(folded $W/a.kiln alloc_count) '^leaf_[ab]$')" -gt 100000 ] || fail "attach: too few allocations"
ok "attached with --heap-sample 32K"

# the option: its forms, and what it refuses (usage: exit 2)
run_to 30 "$KILN" record -q --heap --no-cpu --heap-sample -o $W/d.kiln -- $TARGETS/leaky >/dev/null || fail "--heap-sample alone"
grep -q 'SAMPLED (--heap-sample 512.00 KiB)' <("$KILN" report $W/d.kiln) || fail "default mean is not 512 KiB"
run_to 30 "$KILN" record -q --heap --no-cpu --heap-sample=2M -o $W/d.kiln -- $TARGETS/leaky >/dev/null || fail "--heap-sample=2M"
grep -q 'SAMPLED (--heap-sample 2.00 MiB)' <("$KILN" report $W/d.kiln) || fail "2M"
for bad in "--heap-sample 0" "--heap-sample 2G" "--heap-sample=12Q" "--heap-sample=-5"; do
  "$KILN" record -q --heap $bad -o $W/b.kiln -- true 2>$W/err; rc=$?
  eq $rc 2 "'$bad' exit status"
  head -1 $W/err | grep -q "^kiln record: --heap-sample takes a mean of 1 byte to 1G" || fail "'$bad': $(cat $W/err)"
done
"$KILN" record -q --heap-sample 4096 -o $W/b.kiln -- true 2>$W/err; eq $? 2 "--heap-sample without --heap"
grep -q 'needs --heap' $W/err || fail "--heap-sample without --heap: $(cat $W/err)"
ok "--heap-sample, --heap-sample=2M, --heap-sample 4096; bad values and no --heap: said, exit 2"

# a program that allocates too little to be sampled: said so, and no false
# "never called the allocator" warning (the shim makes its ring at start)
run_to 30 "$KILN" record --heap --no-cpu --heap-sample 1G -o $W/z.kiln -- $TARGETS/mt_alloc 1 0 >/dev/null 2>$W/err || fail "record"
grep -q 'no heap activity' $W/err && fail "false warning: $(cat $W/err)"
grep -q '^# heap: no allocation was sampled' <("$KILN" report $W/z.kiln) || fail "nothing sampled: not said"
ok "nothing sampled: said, no false warning"
