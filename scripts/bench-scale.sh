#!/bin/bash
# Many cores, side by side in one run (issue 22): heap tracking of mt_alloc
# (N threads x 2 M malloc/free pairs) bare / kiln --heap / heaptrack, kiln
# --heap-sample against bare (10 M pairs a thread) with its estimate's error, and CPU
# sampling of mt_cpu (N spinning threads, ~1 s of work each) at 999 Hz, kiln
# against perf record, with the samples each lost; N = 1, 2, 4, ... up to the
# machine's cores. The heap rows time kiln both ways a process orders its
# events across threads (docs/heap.md): time stamps and one shared counter
# (KILN_SEQ; kiln picks stamps from 4 CPUs on). Also many_stacks' profile
# size, compressed and not.
#   usage: scripts/bench-scale.sh [runs]
source "$(dirname "$0")/bench-lib.sh"
N=${1:-3}
cores=$(nproc)
echo "machine: $cores cores; best of $N"
printf '%8s %10s %12s %8s %12s %8s %12s %8s\n' threads bare "kiln stamps" ratio "kiln counter" ratio heaptrack ratio
for t in 1 2 4 8 16 32 64; do
  [ $t -le $cores ] || break
  b=$(best $N $T/mt_alloc $t 2)
  k=$(KILN_SEQ=stamps best $N $KILN record -q --heap --no-cpu -o $W/m.kiln -- $T/mt_alloc $t 2)
  c=$(KILN_SEQ=counter best $N $KILN record -q --heap --no-cpu -o $W/m.kiln -- $T/mt_alloc $t 2)
  if command -v heaptrack >/dev/null; then
    h=$(best 1 heaptrack -o $W/ht $T/mt_alloc $t 2); hr=x$(ratio $h $b); hs=$(ms $h)
  else
    hs="(none)"; hr=-
  fi
  printf '%8s %10s %12s %8s %12s %8s %12s %8s\n' $t "$(ms $b)" "$(ms $k)" "x$(ratio $k $b)" "$(ms $c)" "x$(ratio $c $b)" "$hs" "$hr"
done
# --heap-sample (the default 512 KiB mean) for production: its cost per
# allocation, so 10 M pairs a thread (kiln's start and end, ~0.1 s, weigh
# less), and how far its estimate of the allocations is from the known
# THREADS x 10,000,000
printf '\n%8s %10s %14s %8s %12s\n' threads bare "--heap-sample" ratio "count error"
for t in 1 2 4 8 16 32 64; do
  [ $t -le $cores ] || break
  b=$(best $N $T/mt_alloc $t 10)
  k=$(best $N $KILN record -q --heap --no-cpu --heap-sample -o $W/hs.kiln -- $T/mt_alloc $t 10)
  $KILN export $W/hs.kiln --format folded --metric alloc_count -o $W/hs.folded
  err=$(awk -v want=$((t * 10000000)) '/leaf_[ab]/ { s += $NF } END { printf "%+.2f %%", 100 * (s - want) / want }' $W/hs.folded)
  printf '%8s %10s %14s %8s %12s\n' $t "$(ms $b)" "$(ms $k)" "x$(ratio $k $b)" "$err"
done
lost_kiln() { "$KILN" report "$1" 2>/dev/null | sed -n 's/.* \([0-9]*\) samples LOST.*/\1/p' | head -1; }
printf '\n%8s %12s %10s %10s %10s %10s\n' threads "kiln samples" "kiln lost" "perf samp." "perf lost" "kiln/perf"
for t in 1 2 4 8 16 32 64; do
  [ $t -le $cores ] || break
  k=$(ns $KILN record -q -F 999 -o $W/c.kiln -- $T/mt_cpu $t 1)
  ks=$("$KILN" report $W/c.kiln | sed -n 's/^# duration [0-9.]* s, \([0-9]*\) samples.*/\1/p')
  kl=$(lost_kiln $W/c.kiln || true)
  if command -v perf >/dev/null; then
    p=$(ns perf record -q -F 999 -g -o $W/perf.data -- $T/mt_cpu $t 1)
    ps=$(perf script -i $W/perf.data -F time 2>/dev/null | wc -l || true)
    pl=$(perf report -i $W/perf.data --stats 2>/dev/null | awk '/LOST/ { print $NF; exit }' || true)
    pr=x$(ratio $k $p)
  else
    ps=-; pl=-; pr=-
  fi
  printf '%8s %12s %10s %10s %10s %10s\n' $t "${ks:-?}" "${kl:-0}" "${ps:-?}" "${pl:-0}" "$pr"
done
$KILN record -q --heap --no-cpu -o $W/ms.kiln -- $T/many_stacks >/dev/null
$KILN record -q --heap --no-cpu --no-compress -o $W/ms-raw.kiln -- $T/many_stacks >/dev/null
echo
echo "many_stacks heap profile: $(stat -c %s $W/ms.kiln) B compressed, $(stat -c %s $W/ms-raw.kiln) B stored as it is"
