#!/bin/bash
# Heap tracking cost, side by side with heaptrack in one run, on alloc_heavy 5
# (5 M allocation calls): wall time over bare, calls counted, report time
# against heaptrack_print, file sizes.   usage: scripts/bench-heap.sh [runs]
source "$(dirname "$0")/bench-lib.sh"
N=${1:-5}
bare=$(best $N $T/alloc_heavy 5)
k=$(best $N $KILN record -q --heap --no-cpu -o $W/ah.kiln -- $T/alloc_heavy 5)
kc=$(best $N $KILN record -q --heap -o $W/ahc.kiln -- $T/alloc_heavy 5)
h=$(best $N heaptrack -o $W/ht $T/alloc_heavy 5)
echo "alloc_heavy 5 (best of $N): bare $(ms $bare), kiln --heap --no-cpu $(ms $k) (x$(ratio $k $bare)), kiln --heap (with CPU) $(ms $kc) (x$(ratio $kc $bare)), heaptrack $(ms $h) (x$(ratio $h $bare))"
$KILN export $W/ah.kiln --format folded --metric alloc_count >$W/f
awk '{ n=$NF; $NF=""; if ($0 ~ /(^|;)(make_small|make_zeroed|grow)(;| |$)/) c+=n } END { printf "calls counted through make_small/make_zeroed/grow: %d\n", c }' $W/f
rk=$(best 3 $KILN report $W/ah.kiln --metric alloc_count); rh=$(best 3 heaptrack_print -f $W/ht.zst)
echo "report: kiln $(ms $rk), heaptrack_print $(ms $rh) (x$(ratio $rh $rk) faster)"
echo "file: kiln $(stat -c %s $W/ah.kiln) B, heaptrack $(stat -c %s $W/ht.zst) B"
