#!/bin/bash
# kiln top: a running process's busiest functions, live. Known answers:
# cpu_split (frame_a 60 %, frame_b 30 %, frame_c 10 % of its CPU) in each
# interval's table; py_split.py's py_a/py_b/py_c with --python-only; the
# process keeps running, never left stopped; Ctrl-C, -d and the process's
# end each end kiln top (exit 0); a missing pid and bad options are one
# line and exit 1 / 2; the private folder goes.
source "$(dirname "$0")/lib.sh"
T=$SRC/tests/targets
anystopped() { for t in /proc/$1/task/*; do case $(awk '/^State/{print $2}' $t/status 2>/dev/null) in t|T) return 0;; esac; done; return 1; }
# the share of ROW's total column in the table of frame N of FILE (N: 1 the first)
row_share() { awk -v n="$2" -v r="$3" '/^--- kiln top/ { f++ } f == n && $NF ~ /^\[/ && $(NF-1) == r { sub(/%/, "", $2); print $2; exit }' "$1"; }
frames() { grep -c '^--- kiln top: ' "$1"; }

$TARGETS/cpu_split 60 >/dev/null & CP=$!
sleep 0.3
TMPDIR=$W run_to 30 "$KILN" top $CP -d 3.2 -i 1 --sort total --limit 0 >$W/top.out 2>$W/top.err || fail "top: $(cat $W/top.err)"
n=$(frames $W/top.out); [ "$n" -ge 3 ] || fail "top -d 3.2 -i 1 drew $n tables: $(cat $W/top.out | head -5)"
# the second table: a whole interval of the running process
a=$(row_share $W/top.out 2 frame_a); b=$(row_share $W/top.out 2 frame_b); c=$(row_share $W/top.out 2 frame_c)
[ -n "$a" ] && [ -n "$b" ] && [ -n "$c" ] || fail "top: no frame_a/b/c rows in the second table: $(sed -n '/^--- kiln top/,$p' $W/top.out | head -20)"
within $a 60 5 && within $b 30 5 && within $c 10 4 || fail "top: frame_a/b/c $a/$b/$c %, want 60/30/10"
grep -qE '^kiln top: pid [0-9]+ \(.*cpu_split\), [0-9.]+ s; [0-9.]+\.\.[0-9.]+ s: [0-9]+ cpu samples$' $W/top.out || fail "top: header: $(grep '^kiln top' $W/top.out | head -1)"
kill -0 $CP 2>/dev/null || fail "top: cpu_split died"
anystopped $CP && fail "top: cpu_split left stopped"
[ -z "$(ls -A $W | grep kiln-top)" ] || fail "top: its private folder was left: $(ls $W)"
ok "top -d 3.2: $n tables, frame_a/b/c $a/$b/$c % in the second (60/30/10), the process runs on"

# Ctrl-C (SIGINT to kiln top) ends it, the process unharmed
"$KILN" top $CP -i 0.5 >$W/int.out 2>$W/int.err & TP=$!
for i in $(seq 100); do [ "$(frames $W/int.out)" -ge 2 ] && break; sleep 0.1; done
kill -INT $TP; wait $TP; eq $? 0 "top's exit status after Ctrl-C"
[ "$(frames $W/int.out)" -ge 2 ] || fail "top -i 0.5: $(cat $W/int.out $W/int.err | head -5)"
kill -0 $CP 2>/dev/null || fail "top: cpu_split died after Ctrl-C"
sleep 0.2; anystopped $CP && fail "top: cpu_split left stopped after Ctrl-C"
kill $CP; wait $CP 2>/dev/null
ok "Ctrl-C ends top (exit 0), the process runs on"

# the process's end ends top
$TARGETS/cpu_split 1.5 >/dev/null & CP=$!
run_to 30 "$KILN" top $CP -i 0.5 >$W/end.out 2>$W/end.err; eq $? 0 "top's exit status when the process ends"
grep -q "^kiln top: pid $CP ended$" $W/end.err || fail "top: the end not said: $(cat $W/end.err)"
ok "the process's end ends top: $(cat $W/end.err)"

# Python: the script's functions alone
if command -v python3 >/dev/null; then
  python3 $T/py_split.py 30 >/dev/null & PP=$!
  sleep 1
  run_to 30 "$KILN" top $PP -d 2.2 -i 1 --python-only --sort total --limit 0 >$W/py.out 2>$W/py.err || fail "top of python: $(cat $W/py.err)"
  pa=$(row_share $W/py.out 2 py_a)
  within "${pa:-0}" 60 6 || fail "top --python-only: py_a ${pa:-none} %, want 60: $(sed -n '/^--- kiln top: 2/,$p' $W/py.out | head -12)"
  grep -q '_PyEval_EvalFrameDefault' $W/py.out && fail "top --python-only shows native frames"
  kill $PP; wait $PP 2>/dev/null
  ok "python: py_a $pa % (60) with --python-only"
else
  skip "python3 is not installed"
fi

# bad input: one line, exit 1 or 2
"$KILN" top 999999 >$W/o 2>$W/e; eq $? 1 "top of a missing pid"
[ "$(wc -l <$W/e)" = 1 ] && grep -q '^kiln top: no process with pid 999999$' $W/e || fail "top 999999: $(cat $W/e)"
missing=$(cat $W/e)
"$KILN" top >$W/o 2>$W/e; eq $? 2 "top without a pid"
"$KILN" top 1 -i 0.1 >$W/o 2>$W/e; eq $? 2 "top -i 0.1"
grep -q -- '--interval takes seconds from 0.5' $W/e || fail "top -i 0.1: $(cat $W/e)"
"$KILN" top 1 --by nothing >$W/o 2>$W/e; eq $? 2 "top --by nothing"
"$KILN" top --help | grep -q '^usage: kiln top PID' || fail "top --help"
ok "a missing pid: '$missing' (exit 1); usage errors exit 2"
