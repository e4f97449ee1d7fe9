#!/bin/bash
# Python programs profiled as Python, on every CPython found: Debian's
# python3.11 and pyenv's 3.10-3.13 (each missing one is reported skipped).
# Known answers: py_split.py (60/30/10 by Python function, launched and
# attached), py_native.py (zlib's deflate under compress_work), py_threads.py
# (two threads apart), py_leaky.py (keep_big leaks exactly 8 x 1,000,001 B),
# py_grow.py (snapshots differ by exactly k x 103,300 B under grow). A
# version kiln has no table for (3.9) must say so and keep native frames.
source "$(dirname "$0")/lib.sh"
T=$SRC/tests/targets
pct() { awk -v a="$1" -v t="$2" 'BEGIN { printf "%.1f", (t > 0 ? 100 * a / t : 0) }'; }

# a CPython kiln has no table for (3.9, which names itself only by its
# cache tag): one line says so, the stacks stay native
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
OLD=$(ls -d "$root"/versions/3.9.*/bin/python3.9 2>/dev/null | sort -V | tail -1)
if [ -n "$OLD" ] && [ -z "${KILN_REDUCED:-}" ]; then
  run_to 60 "$KILN" record -q -o $W/old.kiln -- "$OLD" $T/py_split.py 0.3 >/dev/null || fail "python 3.9: record"
  "$KILN" report $W/old.kiln >$W/old.rep || fail "python 3.9: report"
  grep -q "python: pid [0-9]*: Python 3.9 (.*) has no frame table in this kiln: native frames only" $W/old.rep \
    || fail "python 3.9: no notice: $(grep '^# python' $W/old.rep)"
  F=$(folded $W/old.kiln cpu); [ "$(weight $F '^py_a$')" = 0 ] || fail "python 3.9: Python frames invented for a version without a table"
  grep -q "_PyEval_EvalFrameDefault" $F || fail "python 3.9: native interpreter frames missing"
  ok "python 3.9 ($OLD): no table for it: said so, native frames kept"
else
  skip "a CPython kiln has no table for: no pyenv 3.9 (or under the sanitizers)"
fi
# older still (no _PyRuntime at all): said too
for ov in 3.6 2.7; do
  OLD=$(ls -d "$root"/versions/$ov.*/bin/python$ov 2>/dev/null | sort -V | tail -1)
  if [ -z "$OLD" ] || [ -n "${KILN_REDUCED:-}" ]; then skip "CPython $ov: not installed (or under the sanitizers)"; continue; fi
  run_to 60 "$KILN" record -q -o $W/old$ov.kiln -- "$OLD" -c pass >/dev/null || fail "python $ov: record"
  "$KILN" report $W/old$ov.kiln | grep -q "python: pid [0-9]*: a CPython older than 3.7 (no _PyRuntime in .*): native frames only" \
    || fail "python $ov: no notice: $("$KILN" report $W/old$ov.kiln | grep '^# python')"
  ok "python $ov ($OLD): older than 3.7, said so"
done

find_pythons 3.10 3.11 3.12 3.13

for PY in "${pys[@]}"; do
  v=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  tag="python $v ($PY)"
  # 3.10 has no co_qualname: a method is named by its name alone
  JSON_CHAIN='json_work;dumps;JSONEncoder\.encode;JSONEncoder\.iterencode'
  [ "$v" = 3.10 ] && JSON_CHAIN='json_work;dumps;encode;iterencode'
  # CPU, launched: 60/30/10 by Python function, with file:line
  run_to 60 "$KILN" record -q -o $W/split.kiln -- "$PY" $T/py_split.py 2 >/dev/null || fail "$tag: record py_split"
  F=$(folded $W/split.kiln cpu)
  a=$(weight $F '^py_a$'); b=$(weight $F '^py_b$'); c=$(weight $F '^py_c$'); t=$((a + b + c))
  [ $t -gt 500 ] || fail "$tag: only $t samples under py_a/py_b/py_c: $(sort -t' ' -k2 -nr $F | head -2)"
  pa=$(pct $a $t); pb=$(pct $b $t); pc=$(pct $c $t)
  within $pa 60 4 && within $pb 30 4 && within $pc 10 4 || fail "$tag: py_a/py_b/py_c $pa/$pb/$pc, want 60/30/10 ±4"
  # (3.10 calls each Python function through C functions, dropped between
  # two loop calls as 3.11+ has none there)
  grep -qE "<module>( \(py_split.py\))?;main( \(py_split.py\))?;py_a;work" $F || fail "$tag: Python frames out of order: $(grep ';py_a;' $F | head -1)"
  ! grep -q ';_PyEval_Vector;' <(grep ';py_a;' $F | sed 's/.*;<module>//') || fail "$tag: a call path left between Python frames: $(grep ';py_a;' $F | head -1)"
  ! grep -q ';_PyEval_EvalFrameDefault;' <(grep ';py_a;' $F) || fail "$tag: an eval frame left beside the Python frames it ran"
  "$KILN" report $W/split.kiln --by line --limit 0 >$W/line.rep || fail "$tag: report --by line"
  grep -qE 'work \(.*py_split.py:9\)' $W/line.rep || fail "$tag: no file:line for work: $(grep work $W/line.rep | head -2)"
  grep -qE 'py_a \(.*py_split.py:13\)' $W/line.rep || fail "$tag: no file:line for py_a"
  "$KILN" report $W/split.kiln >$W/split.rep
  grep -q "python: pid [0-9]* is CPython $v" $W/split.rep || fail "$tag: header does not name the interpreter"
  if [ "$v" = 3.10 ]; then
    grep -q "python: pid [0-9]*: CPython 3.10: a method is named without its class (no co_qualname before 3.11)" $W/split.rep \
      || fail "$tag: what 3.10 lacks is not said: $(grep '^# python' $W/split.rep)"
  fi
  # --python-only: Python frames alone, totals whole
  P=$(folded $W/split.kiln cpu --python-only)
  eq "$(total $P)" "$(total $F)" "$tag: --python-only total"
  grep -qE '^<module>( \(py_split.py\))?;main( \(py_split.py\))?;py_a;work [0-9]*$' $P || fail "$tag: --python-only: $(head -2 $P)"
  ok "$tag: launched py_a/py_b/py_c $pa/$pb/$pc ($t samples), file:line, --python-only"
  if ! first_of_minor "$PY"; then
    # the same X.Y read through the same table row: its other cases once
    skip "$tag: native, threads, attach, --wall, -X perf, heap and snapshot cases (ran with the first $v found)"
    continue
  fi

  # native frames under the Python function that called them
  run_to 60 "$KILN" record -q -o $W/nat.kiln -- "$PY" $T/py_native.py 1 >/dev/null || fail "$tag: record py_native"
  F=$(folded $W/nat.kiln cpu)
  # a sample whose Python frames were not caught is shown as
  # [python frames unreadable]: never under another Python function
  under=$(awk '/deflate/ { n=$NF; d+=n; if ($0 ~ /;<module>( \([^)]*\))?;/) m+=n; if ($0 ~ /;compress_work;.*deflate/) u+=n } END { printf "%d %d %d", u, m, d }' $F)
  set -- $under
  [ "$3" -gt 50 ] || fail "$tag: only $3 samples in zlib's deflate"
  [ "$1" = "$2" ] || fail "$tag: $2 deflate samples have Python frames, $1 of them under compress_work"
  [ $(( 2 * $2 )) -ge "$3" ] || fail "$tag: only $2 of $3 deflate samples merged with their Python frames"
  grep -qE ";$JSON_CHAIN" $F || fail "$tag: json.dumps's Python frames not under json_work"
  ok "$tag: zlib deflate under compress_work ($1 of $3 samples merged), json.dumps under json_work"

  # threads apart
  run_to 60 "$KILN" record -q -o $W/thr.kiln -- "$PY" $T/py_threads.py 0.5 >/dev/null || fail "$tag: record py_threads"
  F=$(folded $W/thr.kiln cpu --threads)
  ta=$(awk -F';' '/;spin_alpha;/ { print $1 }' $F | sort -u); tb=$(awk -F';' '/;spin_beta;/ { print $1 }' $F | sort -u)
  [ "$(echo "$ta" | wc -l)" = 1 ] && [ "$(echo "$tb" | wc -l)" = 1 ] && [ -n "$ta" ] && [ -n "$tb" ] && [ "$ta" != "$tb" ] \
    || fail "$tag: threads not apart: alpha in [$ta], beta in [$tb]"
  ok "$tag: spin_alpha only in $ta, spin_beta only in $tb"

  # attached, then left running
  "$PY" $T/py_split.py 30 >/dev/null & PP=$!
  sleep 1
  run_to 30 "$KILN" record -q -p $PP -d 2 -o $W/att.kiln || fail "$tag: attach"
  kill -0 $PP 2>/dev/null || fail "$tag: the attached Python process died"
  grep -q 'State:.*[tT]' /proc/$PP/status && fail "$tag: left stopped"
  kill $PP; wait $PP 2>/dev/null
  F=$(folded $W/att.kiln cpu)
  a=$(weight $F '^py_a$'); b=$(weight $F '^py_b$'); c=$(weight $F '^py_c$'); t=$((a + b + c))
  [ $t -gt 300 ] || fail "$tag: attached: only $t samples under py_a/py_b/py_c"
  pa=$(pct $a $t); within $pa 60 5 || fail "$tag: attached py_a $pa %, want 60"
  ok "$tag: attached py_a $pa % ($t samples), left running"

  # --wall: a sleeping Python thread is sampled too, under its Python function
  run_to 60 "$KILN" record -q --wall -o $W/idle.kiln -- "$PY" $T/py_idle.py 1 >/dev/null 2>&1 || fail "$tag: record --wall"
  F=$(folded $W/idle.kiln wall --threads)
  it=$(awk -F';' '/;idle_wait;/ { print $1 }' $F | sort -u); bt=$(awk -F';' '/;busy;/ { print $1 }' $F | sort -u)
  [ -n "$it" ] && [ -n "$bt" ] && [ "$it" != "$bt" ] || fail "$tag: --wall: idle_wait in [$it], busy in [$bt]"
  iw=$(awk -F';' -v t="$it" '$1 == t { n=$0; sub(/.* /, "", n); s+=n; if ($0 ~ /;idle_wait;/) h+=n } END { printf "%d %d", h, s }' $F)
  set -- $iw
  [ "$2" -ge 20 ] && [ $((100 * $1)) -ge $((90 * $2)) ] || fail "$tag: --wall: the idle thread has $1 of $2 samples under idle_wait"
  ok "$tag: --wall: the sleeping thread's $2 samples, $1 under idle_wait (read while it was stopped)"

  # -X perf (3.12+): trampolines stepped and merged away, never a guessed frame
  if [ "${v#3.}" -ge 12 ]; then
    run_to 60 "$KILN" record -q -o $W/xp.kiln -- "$PY" -X perf $T/py_split.py 1.5 >/dev/null || fail "$tag: record -X perf"
    F=$(folded $W/xp.kiln cpu)
    # (a late sample keeps its native frames: its trampolines are named from the perf map)
    ! grep -qE '\[anon\]|0x8000000000000' $F || fail "$tag: -X perf: invented frames: $(grep -m1 -E 'anon|0x8000' $F | cut -c1-300)"
    grep ';py_a;' $F | grep -q 'py::' && fail "$tag: -X perf: a trampoline left beside the Python frames it ran"
    a=$(weight $F '^py_a$'); b=$(weight $F '^py_b$'); c=$(weight $F '^py_c$'); t=$((a + b + c))
    [ $t -gt 300 ] || fail "$tag: -X perf: only $t samples under py_a/py_b/py_c"
    pa=$(pct $a $t); within $pa 60 5 || fail "$tag: -X perf: py_a $pa %"
    xp=$("$KILN" report $W/xp.kiln | sed -n 's/^# python: pid \([0-9]*\) is CPython.*/\1/p')
    [ -n "$xp" ] && rm -f /tmp/perf-$xp.map
    ok "$tag: -X perf: py_a $pa % of $t samples, no trampoline or guessed frame"
  fi

  # heap: exact large blocks under the function that made them
  run_to 120 "$KILN" record -q --heap --no-cpu -o $W/leak.kiln -- "$PY" $T/py_leaky.py >/dev/null || fail "$tag: record --heap"
  L=$(folded $W/leak.kiln leak_bytes); C=$(folded $W/leak.kiln leak_count)
  eq "$(weight $L '^keep_big$')" 8000008 "$tag: keep_big leak_bytes"
  eq "$(weight $C '^keep_big$')" 8 "$tag: keep_big leak_count"
  A=$(folded $W/leak.kiln alloc_count); ch=$(weight $A '^churn$')
  [ "$ch" -ge 100000 ] || fail "$tag: churn made $ch allocations, want >= 100,000"
  eq "$(weight $L '^churn$')" 0 "$tag: churn leaked"
  "$KILN" report $W/leak.kiln --metric leak_bytes >$W/leak.rep
  grep -q "counted until the interpreter began to finalize" $W/leak.rep || fail "$tag: the report does not say what a Python leak means"
  grep -q "allocator pymalloc" $W/leak.rep || fail "$tag: the report does not name the allocator"
  # every object, with PYTHONMALLOC=malloc
  run_to 120 "$KILN" record -q --heap --no-cpu --python-allocator malloc -o $W/leakm.kiln -- "$PY" $T/py_leaky.py >/dev/null \
    || fail "$tag: record --python-allocator malloc"
  C=$(folded $W/leakm.kiln leak_count); ks=$(weight $C '^keep_small')
  [ "$ks" -ge 10000 ] && [ "$ks" -le 10100 ] || fail "$tag: keep_small holds $ks blocks with malloc, want its 10,000 strings (and a few arrays of its lists)"
  "$KILN" report $W/leakm.kiln | grep -q "allocator malloc" || fail "$tag: allocator malloc not said"
  ok "$tag: keep_big 8,000,008 B in 8 blocks, churn >= 100,000 temporaries, keep_small $ks blocks with malloc"

  # snapshots of a running Python program, and their diff
  : >$W/grow.out
  run_to 60 "$KILN" record -q --heap --no-cpu -o $W/grow.kiln -- "$PY" $T/py_grow.py >$W/grow.out 2>&1 & KP=$!
  await_out $W/grow.out ready $KP "$tag: py_grow.py under kiln"
  GP=$(awk '/ready/ { print $2 }' $W/grow.out)
  [ -n "$GP" ] || fail "$tag: py_grow did not start"
  req() { local want=$(( $(grep -c grown $W/grow.out) + 1 )); kill -USR1 $GP; for i in $(seq 200); do [ "$(grep -c grown $W/grow.out)" -ge $want ] && return; sleep 0.02; done; fail "$tag: py_grow did not grow"; }
  req; req
  run_to 20 "$KILN" snapshot $GP -o $W/g1.snap >/dev/null || fail "$tag: snapshot 1"
  req; req; req
  run_to 20 "$KILN" snapshot $GP -o $W/g2.snap >/dev/null || fail "$tag: snapshot 2"
  kill -TERM $GP; wait $KP
  "$KILN" diff $W/g1.snap $W/g2.snap --format folded -o $W/g.folded >/dev/null || fail "$tag: diff"
  eq "$(weight $W/g.folded '^grow$')" 309900 "$tag: growth under grow() between the snapshots (3 x 100 x 1,033 B)"
  ok "$tag: snapshot diff +309,900 B under grow()"

  # the heap of a Python process that is already running
  : >$W/grow2.out
  "$PY" $T/py_grow.py >$W/grow2.out 2>&1 & GP=$!
  await_out $W/grow2.out ready $GP "$tag: py_grow.py"
  req2() { local want=$(( $(grep -c grown $W/grow2.out) + 1 )); kill -USR1 $GP; for i in $(seq 200); do [ "$(grep -c grown $W/grow2.out)" -ge $want ] && return; sleep 0.02; done; fail "$tag: py_grow did not grow"; }
  req2
  "$KILN" record -q --heap --no-cpu -p $GP -o $W/ga.kiln 2>$W/ga.err & KP=$!
  for i in $(seq 100); do grep -q kiln_shim /proc/$GP/maps 2>/dev/null && break; sleep 0.05; done
  sleep 0.3
  req2; req2
  kill -INT $KP; wait $KP || fail "$tag: heap attach to Python: $(tail -1 $W/ga.err)"
  kill -0 $GP || fail "$tag: the Python process died after the heap attach"
  req2
  kill -TERM $GP; wait $GP
  eq "$(weight $(folded $W/ga.kiln leak_bytes) '^grow$')" 206600 "$tag: attached: leak_bytes under grow() (2 x 103,300 B)"
  ok "$tag: heap attach to a running Python: +206,600 B under grow(), exact; it ran on"
done
