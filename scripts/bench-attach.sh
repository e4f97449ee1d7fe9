#!/bin/bash
# The cost of being attached: fixed_work's wall time bare, with kiln attached
# for its whole run (perf_event, 999 Hz; ptrace --wall, 99 Hz), and with
# `perf record -p` attached, side by side.   usage: scripts/bench-attach.sh [runs]
source "$(dirname "$0")/bench-lib.sh"
N=${1:-5}
attached() {  # attached CMD...: run fixed_work with CMD -p PID attached; print its wall ns
  local s pid ap
  s=$(date +%s%N)
  $T/fixed_work >/dev/null & pid=$!
  "$@" -p $pid >/dev/null 2>&1 & ap=$!
  wait $pid; local e=$(( $(date +%s%N) - s ))
  kill -INT $ap 2>/dev/null; wait $ap 2>/dev/null
  echo $e
}
bestof() { local m=999999999999999 v i; for ((i=0;i<N;i++)); do v=$(attached "$@"); [ "$v" -lt "$m" ] && m=$v; done; echo $m; }
bare=$(best $N $T/fixed_work)
kp=$(bestof $KILN record -q -o $W/a.kiln)
kw=$(bestof $KILN record -q --wall -F 99 -o $W/w.kiln)
pp=$(bestof perf record -q -F 999 --call-graph dwarf -o $W/perf.data)
echo "fixed_work (best of $N): bare $(ms $bare)"
echo "  kiln attached, perf_event 999 Hz: $(ms $kp) (+$(awk -v a=$kp -v b=$bare 'BEGIN{printf "%.1f", 100*(a/b-1)}')%)"
echo "  kiln attached, ptrace --wall 99 Hz: $(ms $kw) (+$(awk -v a=$kw -v b=$bare 'BEGIN{printf "%.1f", 100*(a/b-1)}')%)"
echo "  perf record -p, dwarf 999 Hz: $(ms $pp) (+$(awk -v a=$pp -v b=$bare 'BEGIN{printf "%.1f", 100*(a/b-1)}')%)"
