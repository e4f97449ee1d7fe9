#!/bin/bash
# Python CPU profiles that are right on a busy machine (two CPU hogs run
# beside every case), on every CPython 3.10-3.13 found:
#   py_mixed.py: recursion 50 %, a loop of short calls 25 %, a C extension
#     25 % (of process CPU time): each within 3 points, launched and
#     attached, and at least 97 % of samples with Python frames;
#   py_names/: two functions named handle in two modules, 75/25: two rows,
#     two flamegraph boxes, each with its def line;
#   py_init.py: no phantom __init__ frame (3.13's _Py_InitCleanup shim);
#   without the eBPF reader (KILN_NO_BPF=1, as unprivileged) a Python is
#     sampled with ptrace (50/25/25 too, its stop time said); one started
#     by a shell shows [python frames unreadable], counted, never guessed;
#   py_objects.py with --trace-python-allocators: the bytes keep_small and
#     keep_big hold at the end and at the peak are tracemalloc's to 1 %;
#   static_twins (C): two static functions named work in two files: two rows.
source "$(dirname "$0")/lib.sh"
T=$SRC/tests/targets
if [ -n "${KILN_REDUCED:-}" ]; then
  # CPU shares against a ±3-point bar are the Release stage's: the
  # sanitized recorder runs beside the hogs at a fraction of its speed
  # (t_python runs the eBPF reader under the sanitizers)
  skip "under the sanitizers: every case of t_python_exact (the -Werror stage ran them all)"
  exit 0
fi
hogs
pct() { awk -v a="$1" -v t="$2" 'BEGIN { printf "%.1f", (t > 0 ? 100 * a / t : 0) }'; }
# three FOLDED: "r c s" percents of recurse/chatter/squeeze among the three
three() {
  local r c s
  r=$(weight $1 '^recurse$'); c=$(weight $1 '^chatter$'); s=$(weight $1 '^squeeze$')
  [ $((r + c + s)) -gt 300 ] || fail "$tag: only $((r + c + s)) samples under recurse/chatter/squeeze"
  echo "$(pct $r $((r + c + s))) $(pct $c $((r + c + s))) $(pct $s $((r + c + s)))"
}

# C first: it needs no Python
run_to 60 "$KILN" record -q -o $W/tw.kiln -- $TARGETS/static_twins 1.5 >/dev/null || fail "record static_twins"
"$KILN" report $W/tw.kiln --limit 0 >$W/tw.rep || fail "report static_twins"
ra=$(awk '$5 == "work" && $6 == "(static_twins.c)" { print $3 }' $W/tw.rep)
rb=$(awk '$5 == "work" && $6 == "(static_twins_b.c)" { print $3 }' $W/tw.rep)
[ -n "$ra" ] && [ -n "$rb" ] || fail "static_twins: not two rows: $(grep work $W/tw.rep)"
within $(pct $ra $((ra + rb))) 70 4 || fail "static_twins: work (static_twins.c) $(pct $ra $((ra + rb))) %, want 70 ±4"
"$KILN" flamegraph $W/tw.kiln -o $W/tw.svg || fail "flamegraph static_twins"
grep -q 'work (static_twins.c)' $W/tw.svg && grep -q 'work (static_twins_b.c)' $W/tw.svg || fail "static_twins: not two boxes"
"$KILN" export $W/tw.kiln --format folded -o $W/tw.folded || fail "export static_twins"
grep -q ';main;work (static_twins.c) [0-9]*$' $W/tw.folded && grep -q ';work (static_twins_b.c) [0-9]*$' $W/tw.folded \
  || fail "static_twins: folded stacks do not name the file: $(sort -t' ' -k2 -nr $W/tw.folded | head -2)"
ok "static_twins: two rows and two boxes, work (static_twins.c) $(pct $ra $((ra + rb))) % (want 70)"

find_pythons 3.10 3.11 3.12 3.13
for PY in "${pys[@]}"; do
  v=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  tag="python $v ($PY)"
  full=1; first_of_minor "$PY" || full=
  # launched (4 s: start-up, native until the interpreter runs Python, is a
  # fixed cost the share of samples with Python frames is measured against)
  run_to 90 "$KILN" record -q -o $W/m.kiln -- "$PY" $T/py_mixed.py 4 >/dev/null 2>$W/err || fail "$tag: record: $(tail -1 $W/err)"
  "$KILN" report $W/m.kiln >$W/m.rep || fail "$tag: report"
  if ! grep -q "read by eBPF" $W/m.rep; then
    skip "$tag: Python frames at each sample need the eBPF reader (root, or CAP_BPF and CAP_PERFMON): $(grep '^# python' $W/m.rep | head -1)"
    continue
  fi
  read r c s < <(three $(folded $W/m.kiln cpu))
  within $r 50 3 && within $c 25 3 && within $s 25 3 || fail "$tag: launched recurse/chatter/squeeze $r/$c/$s, want 50/25/25 ±3"
  P=$(folded $W/m.kiln cpu --python-only)
  withpy=$(awk -v t=$(total $P) -v n=$(weight $P '^\[') 'BEGIN { printf "%.1f", 100*(t-n)/t }')
  awk -v p=$withpy 'BEGIN { exit !(p >= 97) }' || fail "$tag: only $withpy % of samples carry Python frames"
  # the header says how the frames were read and what was not caught
  grep -q "^# python: pid [0-9]* is CPython $v: [0-9]* stacks with Python frames (read by eBPF" $W/m.rep \
    || fail "$tag: header: $(grep '^# python' $W/m.rep)"
  ok "$tag: launched under two hogs $r/$c/$s (50/25/25), $withpy % with Python frames"
  if [ -z "$full" ]; then
    # the same X.Y read through the same table row: its other cases once
    skip "$tag: attached, names, __init__, objects and no-eBPF cases (ran with the first $v found)"
    continue
  fi

  # attached
  "$PY" $T/py_mixed.py 60 >/dev/null & pp=$!
  sleep 1
  run_to 40 "$KILN" record -q -p $pp -d 2 -o $W/a.kiln >/dev/null 2>$W/err || { kill -9 $pp; fail "$tag: attach: $(tail -1 $W/err)"; }
  kill -0 $pp 2>/dev/null || fail "$tag: the Python process died after the attach"
  kill -9 $pp; wait $pp 2>/dev/null
  read r c s < <(three $(folded $W/a.kiln cpu))
  within $r 50 3 && within $c 25 3 && within $s 25 3 || fail "$tag: attached recurse/chatter/squeeze $r/$c/$s, want 50/25/25 ±3"
  P=$(folded $W/a.kiln cpu --python-only)
  withpy=$(awk -v t=$(total $P) -v n=$(weight $P '^\[') 'BEGIN { printf "%.1f", 100*(t-n)/t }')
  awk -v p=$withpy 'BEGIN { exit !(p >= 97) }' || fail "$tag: attached: only $withpy % of samples carry Python frames"
  ok "$tag: attached under two hogs $r/$c/$s (50/25/25), $withpy % with Python frames; it ran on"

  # same-named functions in two modules
  (cd $T/py_names && run_to 60 "$KILN" record -q -o $W/n.kiln -- "$PY" app.py 2 >/dev/null) || fail "$tag: record py_names"
  "$KILN" report $W/n.kiln --python-only --limit 0 >$W/n.rep || fail "$tag: report py_names"
  la=$(grep -F 'handle (mod_a.py)  [mod_a.py:4]' $W/n.rep | awk '{ print $1 }')
  lb=$(grep -F 'handle (mod_b.py)  [mod_b.py:4]' $W/n.rep | awk '{ print $1 }')
  [ -n "$la" ] && [ -n "$lb" ] || fail "$tag: handle of mod_a and mod_b not two rows with their def lines: $(grep handle $W/n.rep)"
  within $(pct $la $((la + lb))) 75 4 || fail "$tag: handle (mod_a.py) $(pct $la $((la + lb))) % of the two, want 75 ±4"
  # its own row, at its own def line (with its file only if another main was sampled)
  grep -qE '^ .*  main( \(app.py\))?  \[app.py:6\]$' $W/n.rep || fail "$tag: the script's main is not shown as its own: $(grep ' main' $W/n.rep | head -3)"
  "$KILN" flamegraph $W/n.kiln -o $W/n.svg || fail "$tag: flamegraph"
  grep -q 'handle (mod_a.py)' $W/n.svg && grep -q 'handle (mod_b.py)' $W/n.svg || fail "$tag: not two flamegraph boxes"
  ok "$tag: handle (mod_a.py) and handle (mod_b.py) two rows with def lines, $(pct $la $((la + lb))) % (want 75), two boxes"

  # no phantom frame inside an instantiation (3.10, without co_qualname,
  # names the method alone: main;__init__ and nothing between or under)
  # (its file beside it where importlib's __init__s were sampled too)
  init='Builder.__init__'; [ "$v" = 3.10 ] && init='__init__( \(py_init.py\))?'
  run_to 60 "$KILN" record -q -o $W/i.kiln -- "$PY" $T/py_init.py 1 >/dev/null || fail "$tag: record py_init"
  F=$(folded $W/i.kiln cpu --python-only)
  grep -qE ";main( \([^)]*\))?;$init [0-9]+\$" $F || fail "$tag: main;$init missing: $(sort -t' ' -k2 -nr $F | head -2)"
  if [ "$v" = 3.10 ]; then
    ! grep -qE '(^|;)__init__( \(py_init.py\))?;' $F || fail "$tag: a frame under __init__: $(grep -E '(^|;)__init__( \(py_init.py\))?;' $F | head -1)"
  else
    ! grep -qE '(^|;)__init__(;| )' $F || fail "$tag: a frame named plain __init__: $(grep -E '(^|;)__init__(;| )' $F | head -1)"
  fi
  "$KILN" report $W/i.kiln --by file --limit 0 >$W/i.rep || fail "$tag: report --by file"
  ! grep -qE '  __init__$' $W/i.rep || fail "$tag: --by file lists a file __init__"
  ok "$tag: main;${init%%(*} with no phantom __init__ frame"

  # every object, with Python's allocators traced: what keep_small and
  # keep_big still hold at the end, and at the peak, is tracemalloc's to 1 %
  "$PY" $T/py_objects.py tracemalloc >$W/tm.txt || fail "$tag: py_objects under tracemalloc"
  run_to 90 "$KILN" record -q --heap --no-cpu --trace-python-allocators -o $W/o.kiln -- "$PY" $T/py_objects.py >/dev/null \
    || fail "$tag: record --trace-python-allocators"
  "$KILN" report $W/o.kiln >$W/o.rep || fail "$tag: report py_objects"
  grep -q "domains traced (--trace-python-allocators): every object is seen" $W/o.rep || fail "$tag: the mode is not said"
  grep -q "^# heap: no events lost" $W/o.rep || fail "$tag: heap events lost: $(grep '^# heap' $W/o.rep)"
  for m in leak_bytes peak_bytes; do
    "$KILN" report $W/o.kiln --metric $m --python-only --limit 0 --json >$W/o.$m.json || fail "$tag: report --json $m"
    for fn in keep_small keep_big; do
      k=$(python3 -c "import json,sys; print(sum(r['total'] for r in json.load(open(sys.argv[1]))['rows'] if r['name'] == sys.argv[2]))" $W/o.$m.json $fn)
      t=$(awk -v f=$fn '$1 == f { print $2 }' $W/tm.txt)
      awk -v k=$k -v t=$t 'BEGIN { d = k - t; if (d < 0) d = -d; exit !(t > 0 && d <= t / 100) }' \
        || fail "$tag: $m under $fn: kiln $k B, tracemalloc $t B (want within 1 %)"
      eval "${fn}_$m=$k; ${fn}_tm=$t"
    done
  done
  ok "$tag: every object traced: keep_small $keep_small_leak_bytes B (tracemalloc $keep_small_tm), keep_big $keep_big_leak_bytes B ($keep_big_tm), the same at the peak"

  # the readers' choice is the same code for every version (t_python's
  # --wall reads each version with ptrace): once
  if [ "$PY" != "${pys[0]}" ]; then
    skip "$tag: the cases without eBPF (run with ${pys[0]})"
    continue
  fi
  # without the eBPF reader (unprivileged): a Python program is sampled with
  # ptrace, frames read while the thread is stopped, its cost said
  KILN_NO_BPF=1 run_to 90 "$KILN" record -q -o $W/pt.kiln -- "$PY" $T/py_mixed.py 2 >/dev/null 2>$W/err || fail "$tag: record without eBPF"
  grep -q "sampling with ptrace instead" $W/err || fail "$tag: without eBPF the fallback is not said: $(cat $W/err)"
  read r c s < <(three $(folded $W/pt.kiln cpu))
  within $r 50 3 && within $c 25 3 && within $s 25 3 || fail "$tag: ptrace recurse/chatter/squeeze $r/$c/$s, want 50/25/25 ±3"
  "$KILN" report $W/pt.kiln >$W/pt.rep || fail "$tag: report without eBPF"
  grep -qE "read by ptrace, the thread stopped at each sample\); each sample stopped its thread [0-9.]+ us" $W/pt.rep \
    || fail "$tag: the ptrace reader or its cost not said: $(grep '^# python' $W/pt.rep)"
  ok "$tag: without eBPF, ptrace $r/$c/$s (50/25/25), $(grep -oE 'stopped its thread [0-9.]+ us' $W/pt.rep)"
  # a Python not known as one up front (started by a shell), without eBPF:
  # nothing guessed, everything counted
  KILN_NO_BPF=1 run_to 60 "$KILN" record -q -o $W/nb.kiln -- sh -c "exec '$PY' '$T/py_mixed.py' 1" >/dev/null 2>&1 \
    || fail "$tag: record sh -c without eBPF"
  "$KILN" report $W/nb.kiln >$W/nb.rep || fail "$tag: report without eBPF"
  F=$(folded $W/nb.kiln cpu)
  un=$(weight $F '^\[python frames unreadable\]$')
  [ "$un" -gt 100 ] || fail "$tag: without eBPF only $un samples marked unreadable"
  [ "$(weight $F '^(recurse|chatter|squeeze)$')" = 0 ] || fail "$tag: without eBPF Python functions were guessed"
  grep -q "$un whose frames the sampler did not catch" $W/nb.rep || fail "$tag: without eBPF the header does not count them: $(grep '^# python' $W/nb.rep)"
  ok "$tag: a Python started by sh without eBPF: $un samples shown as [python frames unreadable] and counted"
done
