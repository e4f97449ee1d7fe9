#!/bin/bash
# Python, side by side in one run: CPU sampling of a CPU-bound script
# (py_fixed.py; py_mixed.py's shares under two CPU hogs, with what reading
# the frames cost per sample: eBPF in the sampled thread, ptrace's stop),
# and heap tracking of an allocation-heavy one
# (py_alloc_heavy.py), kiln against the bare run and the peers Debian has:
# perf (native frames only), heaptrack (native frames only), austin (Python
# frames; Debian's 1.0.1 reads CPython up to 3.8 only: said when it fails).
# py-spy and memray are not packaged by Debian: not run.
#   usage: scripts/bench-python.sh [runs] [python]   (default 5, /usr/bin/python3.11)
source "$(dirname "$0")/bench-lib.sh"
N=${1:-5}; PY=${2:-/usr/bin/python3.11}
S=tests/targets
echo "$($PY --version) ($PY), best of $N"
# CPU: target <= 1.10x of bare, on a fixed amount of work (py_fixed.py)
b=$(best $N $PY $S/py_fixed.py 80)
k=$(best $N $KILN record -q -o $W/c.kiln -- $PY $S/py_fixed.py 80)
p=$(best $N perf record -q -F 999 --call-graph dwarf -o $W/perf.data -- $PY $S/py_fixed.py 80)
line="py_fixed 80 (999 Hz): bare $(ms $b), kiln $(ms $k) (x$(ratio $k $b)), perf --call-graph dwarf $(ms $p) (x$(ratio $p $b))"
if command -v austin >/dev/null; then
  if austin -i 1000 -o $W/austin.out $PY $S/py_fixed.py 1 >/dev/null 2>&1 && [ -s $W/austin.out ]; then
    a=$(best $N austin -i 1000 -o $W/austin.out $PY $S/py_fixed.py 80); line="$line, austin $(ms $a) (x$(ratio $a $b))"
  else line="$line, austin: cannot read this CPython ($(austin -V 2>&1 | head -1))"; fi
else line="$line, austin: not installed"; fi
echo "$line"
$KILN export $W/c.kiln --format folded >$W/c.f
awk '{ n=$NF; t+=n; if ($0 ~ /;fib_loop/) a+=n; if ($0 ~ /;word_count/) c+=n; if ($0 ~ /;<module>( \([^)]*\))?;/) m+=n }
  END { printf "  kiln: %d samples, %.1f %% with Python frames: fib_loop %.1f %%, word_count %.1f %%\n", t, 100*m/t, 100*a/t, 100*c/t }' $W/c.f
$KILN record -q -o $W/s.kiln -- $PY $S/py_split.py 3 >/dev/null
$KILN export $W/s.kiln --format folded >$W/s.f
awk '{ n=$NF; if ($0 ~ /;py_a;/) a+=n; if ($0 ~ /;py_b;/) b+=n; if ($0 ~ /;py_c;/) c+=n }
  END { s=a+b+c; printf "  py_split 3 s: py_a %.1f %%, py_b %.1f %%, py_c %.1f %% (want 60/30/10)\n", 100*a/s, 100*b/s, 100*c/s }' $W/s.f
# Python frames at each sample: shares under two CPU hogs, and the cost per
# sample of each reader (eBPF: time in the program; ptrace: the stop)
timeout 600 yes >/dev/null & Y1=$!; timeout 600 yes >/dev/null & Y2=$!
$KILN record -q -o $W/x.kiln -- $PY $S/py_mixed.py 3 >/dev/null
KILN_NO_BPF=1 $KILN record -q -o $W/y.kiln -- $PY $S/py_mixed.py 3 >/dev/null 2>&1
pkill -P $Y1; pkill -P $Y2
for f in x y; do
  $KILN export $W/$f.kiln --format folded >$W/$f.f
  how=$($KILN report $W/$f.kiln | grep -oE 'read by [a-zA-Z]+|took [0-9.]+ us a sample|stopped its thread [0-9.]+ us' | tr '\n' ' ' || true)
  awk -v how="$how" '{ n=$NF; t+=n; if ($0 ~ /;recurse(;| )/) r+=n; if ($0 ~ /;chatter(;| )/) c+=n; if ($0 ~ /;squeeze(;| )/) q+=n }
    END { s=r+c+q; printf "  py_mixed 3 s beside two hogs, %s: recurse %.1f %%, chatter %.1f %%, squeeze %.1f %% (want 50/25/25)\n", how, 100*r/s, 100*c/s, 100*q/s }' $W/$f.f
done
# heap: target <= 2x of bare
R=800
hb=$(best $N $PY $S/py_alloc_heavy.py $R)
hk=$(best $N $KILN record -q --heap --no-cpu -o $W/h.kiln -- $PY $S/py_alloc_heavy.py $R)
hkc=$(best $N $KILN record -q --heap -o $W/hc.kiln -- $PY $S/py_alloc_heavy.py $R)
ht=$(best $N heaptrack -o $W/ht $PY $S/py_alloc_heavy.py $R)
echo "py_alloc_heavy $R (pymalloc, Python's default): bare $(ms $hb), kiln --heap --no-cpu $(ms $hk) (x$(ratio $hk $hb)), kiln --heap with CPU $(ms $hkc) (x$(ratio $hkc $hb)), heaptrack $(ms $ht) (x$(ratio $ht $hb))"
mb=$(best $N env PYTHONMALLOC=malloc $PY $S/py_alloc_heavy.py $R)
mk=$(best $N $KILN record -q --heap --no-cpu --python-allocator malloc -o $W/m.kiln -- $PY $S/py_alloc_heavy.py $R)
mt=$(best $N env PYTHONMALLOC=malloc heaptrack -o $W/mt $PY $S/py_alloc_heavy.py $R)
echo "py_alloc_heavy $R with PYTHONMALLOC=malloc (every object): bare $(ms $mb), kiln $(ms $mk) (x$(ratio $mk $mb)), heaptrack $(ms $mt) (x$(ratio $mt $mb))"
calls=$($KILN export $W/m.kiln --format folded --metric alloc_count | awk '{ s+=$NF } END { print s }')
py=$($KILN export $W/m.kiln --format folded --metric alloc_count | awk '/;parse_round;|;build_round;|;main;/ { s+=$NF } END { print s+0 }')
echo "  kiln recorded $calls allocations with PYTHONMALLOC=malloc, $py of them under the script's Python functions"
dk=$(best $N $KILN record -q --heap --no-cpu --trace-python-allocators -o $W/d.kiln -- $PY $S/py_alloc_heavy.py $R)
echo "py_alloc_heavy $R, every object two ways beside each other: bare $(ms $hb), kiln --trace-python-allocators (pymalloc kept) $(ms $dk) (x$(ratio $dk $hb)), kiln --python-allocator malloc $(ms $mk) (x$(ratio $mk $hb) of pymalloc's bare); default only if x2 or less"
