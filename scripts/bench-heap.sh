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

# Thread scaling: the same 1,024,000 malloc+free pairs from 2 threads and
# from 256 (thread_pool T N 0), the cost under each tool relative to bare;
# the ratio 256/2 is what the merge of many rings costs (target <= 1.5).
b2=$(best $N $T/thread_pool 2 512000 0); b256=$(best $N $T/thread_pool 256 4000 0)
k2=$(best $N $KILN record -q --heap --no-cpu -o $W/s2.kiln -- $T/thread_pool 2 512000 0)
k256=$(best $N $KILN record -q --heap --no-cpu -o $W/s256.kiln -- $T/thread_pool 256 4000 0)
h2=$(best $N heaptrack -o $W/hs2 $T/thread_pool 2 512000 0)
h256=$(best $N heaptrack -o $W/hs256 $T/thread_pool 256 4000 0)
pair() { awk -v t=$1 -v b=$2 'BEGIN { printf "%.0f ns", (t - b) / 1024000 }'; }
echo "threads, 1,024,000 pairs: bare 2 thr $(ms $b2), 256 thr $(ms $b256);" \
  "kiln 2 thr $(ms $k2) (+$(pair $k2 $b2)/pair), 256 thr $(ms $k256) (+$(pair $k256 $b256)/pair), 256/2 x$(awk -v a=$k256 -v b=$k2 -v c=$b256 -v d=$b2 'BEGIN { printf "%.2f", (a/b)/(c/d) }');" \
  "heaptrack 2 thr $(ms $h2) (+$(pair $h2 $b2)/pair), 256 thr $(ms $h256) (+$(pair $h256 $b256)/pair), 256/2 x$(awk -v a=$h256 -v b=$h2 -v c=$b256 -v d=$b2 'BEGIN { printf "%.2f", (a/b)/(c/d) }')"

# 500 short-lived children (fork_many 500), each leaking one block: the time
# under each tool beyond its own start-up (fork_many 0) against bare.
fb=$(best $N $T/fork_many 500)
fk=$(best $N $KILN record -q --heap --no-cpu -o $W/f.kiln -- $T/fork_many 500); fk0=$(best $N $KILN record -q --heap --no-cpu -o $W/f0.kiln -- $T/fork_many 0)
fh=$(best $N heaptrack -o $W/hf $T/fork_many 500); fh0=$(best $N heaptrack -o $W/hf0 $T/fork_many 0)
echo "fork_many 500: bare $(ms $fb); kiln +$(ms $((fk - fk0))) over its start-up (x$(ratio $((fk - fk0)) $fb) of bare);" \
  "heaptrack +$(ms $((fh - fh0))) (x$(ratio $((fh - fh0)) $fb) of bare; it follows no forked child: its figure is the parent alone)"

# 2,000 threads alive at once (thread_pool 2000 10 1): shared memory at its
# peak under kiln (/proc/meminfo Shmem), and exactness
s0=$(awk '/^Shmem:/ {print $2}' /proc/meminfo); peak=0
$KILN record -q --heap --no-cpu -o $W/tp.kiln -- $T/thread_pool 2000 10 1 >/dev/null & P=$!
while kill -0 $P 2>/dev/null; do s=$(awk '/^Shmem:/ {print $2}' /proc/meminfo); [ $((s - s0)) -gt $peak ] && peak=$((s - s0)); sleep 0.05; done
wait $P
leak=$($KILN export $W/tp.kiln --format folded --metric leak_bytes | awk '/worker_leak/ { s+=$NF } END { print s+0 }')
echo "2,000 threads: kiln shared memory peak $((peak / 1024)) MiB (target < 64), worker_leak $leak B (want 200000)"
