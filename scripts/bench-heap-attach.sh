#!/bin/bash
# Heap tracking of a running process, side by side: how long its threads are
# held up by the attach (tick_gap 100: 100 threads that tick every ms and
# keep their longest gap), what the attached run costs an allocating
# program, kiln against heaptrack -p (which injects through gdb).
#   usage: scripts/bench-heap-attach.sh [runs]   (default 5)
source "$(dirname "$0")/bench-lib.sh"
N=${1:-5}
$T/tick_gap 100 >$W/tg.out & TP=$!
trap 'kill -9 $TP 2>/dev/null; rm -rf "$W"' EXIT
for i in $(seq 50); do grep -q ready $W/tg.out && break; sleep 0.1; done
gap() { kill -USR2 $TP; sleep 0.2; tail -1 $W/tg.out; }
kill -USR1 $TP; sleep 1.2; idle=$(gap)
kmax=0; khit=0; kst=""
for i in $(seq $N); do
  kill -USR1 $TP; sleep 0.1
  $KILN record -q --heap --no-cpu -p $TP -d 1 -o $W/k.kiln 2>$W/k.err || echo "kiln attach failed: $(tail -1 $W/k.err)"
  r=$(gap); g=$(echo "$r" | awk '{ print $2 }'); h=$(echo "$r" | awk '{ print $4 }')
  [ "$g" -gt $kmax ] && kmax=$g; [ "$h" -gt $khit ] && khit=$h
done
$KILN record --heap --no-cpu -p $TP -d 0.5 -o $W/k.kiln 2>$W/k.err
kst=$(sed -n 's/.*thread [0-9]* was stopped \([0-9.]*\) ms.*/\1/p' $W/k.err); kdt=$(sed -n 's/.*thread [0-9]* stopped \([0-9.]*\) ms).*/\1/p' $W/k.err)
echo "tick_gap 100 threads, idle: $idle"
echo "kiln --heap -p, $N attach+detach cycles: longest gap $((kmax / 1000)) ms, at most $khit of 100 threads held over 5 ms (it stops one; it says: attach $kst ms, detach $kdt ms)"
kill -TERM $TP; wait $TP 2>/dev/null || true
# heaptrack -p, on a fresh tick_gap each time (gdb injects heaptrack's library)
hres=""
for i in $(seq $N); do
  $T/tick_gap 100 >$W/tg2.out & TP=$!
  for k in $(seq 50); do grep -q ready $W/tg2.out && break; sleep 0.1; done
  timeout -k 3 -s INT 10 heaptrack -p $TP -o $W/ht >$W/ht.log 2>&1 &
  HP=$!; sleep 6; kill -INT $HP 2>/dev/null || true; wait $HP 2>/dev/null || true
  if kill -0 $TP 2>/dev/null; then
    r=$(kill -USR2 $TP; sleep 0.2; tail -1 $W/tg2.out); hres="$hres [$r]"; kill -TERM $TP
  else
    hres="$hres [target DIED: $(grep -m1 -iE "couldn|error|fail" $W/ht.log | head -c 120)]"
  fi
  wait $TP 2>/dev/null || true
done
echo "heaptrack -p (gdb), $N attaches:$hres"
# the cost while attached: alloc_heavy-like work in a long-running process
$T/cxx_churn 12 >/dev/null & CP=$!
sleep 1
c0=$(awk '{ print $14 + $15 }' /proc/$CP/stat)
sleep 2; c1=$(awk '{ print $14 + $15 }' /proc/$CP/stat)
$KILN record -q --heap --no-cpu -p $CP -d 2 -o $W/c.kiln
c2=$(awk '{ print $14 + $15 }' /proc/$CP/stat)
n=$($KILN export $W/c.kiln --format folded --metric alloc_count | awk '{ s+=$NF } END { print s }')
kill $CP; wait $CP 2>/dev/null || true
echo "cxx_churn (8 threads allocating): CPU ticks in 2 s bare $((c1 - c0)), attached 2 s $((c2 - c1)); $n allocations recorded ($((n / 2)) a second)"
