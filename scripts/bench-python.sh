#!/bin/bash
# Python, side by side in one run: CPU sampling of a CPU-bound script
# (py_split.py) and heap tracking of an allocation-heavy one
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
awk '{ n=$NF; t+=n; if ($0 ~ /;fib_loop/) a+=n; if ($0 ~ /;word_count/) c+=n; if ($0 ~ /;<module>;/) m+=n }
  END { printf "  kiln: %d samples, %.1f %% with Python frames: fib_loop %.1f %%, word_count %.1f %%\n", t, 100*m/t, 100*a/t, 100*c/t }' $W/c.f
$KILN record -q -o $W/s.kiln -- $PY $S/py_split.py 3 >/dev/null
$KILN export $W/s.kiln --format folded >$W/s.f
awk '{ n=$NF; if ($0 ~ /;py_a;/) a+=n; if ($0 ~ /;py_b;/) b+=n; if ($0 ~ /;py_c;/) c+=n }
  END { s=a+b+c; printf "  py_split 3 s: py_a %.1f %%, py_b %.1f %%, py_c %.1f %% (want 60/30/10)\n", 100*a/s, 100*b/s, 100*c/s }' $W/s.f
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
