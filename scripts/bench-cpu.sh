#!/bin/bash
# CPU sampling cost, side by side with perf in one run: fixed_work's wall time
# bare, under `kiln record` (999 Hz, DWARF unwinding as samples arrive) and
# under `perf record -F 999 --call-graph dwarf`; then `kiln report` of a
# 60-second recording.   usage: scripts/bench-cpu.sh [runs]
source "$(dirname "$0")/bench-lib.sh"
N=${1:-5}
bare=$(best $N $T/fixed_work)
k=$(best $N $KILN record -q -o $W/fw.kiln -- $T/fixed_work)
p=$(best $N perf record -q -F 999 --call-graph dwarf -o $W/perf.data -- $T/fixed_work)
echo "fixed_work (best of $N): bare $(ms $bare), kiln $(ms $k) (x$(ratio $k $bare)), perf dwarf $(ms $p) (x$(ratio $p $bare))"
echo "files: kiln $(stat -c %s $W/fw.kiln) B, perf.data $(stat -c %s $W/perf.data) B"
$KILN export $W/fw.kiln --format folded >$W/f
awk '{ n=$NF; t+=n; if ($0 ~ /(^|;)main(;| )/) m+=n } END { printf "kiln stacks unwound to main: %.2f%%\n", 100*m/t }' $W/f
if [ "${SKIP_LONG:-}" != 1 ]; then
  $KILN record -q -o $W/long.kiln -- $T/cpu_split 60 >/dev/null
  r=$(best 3 $KILN report $W/long.kiln)
  pr=$(best 1 perf report -i $W/perf.data --stdio)
  echo "report of a 60 s recording ($(stat -c %s $W/long.kiln) B): kiln $(ms $r); perf report of fixed_work's perf.data: $(ms $pr)"
fi
