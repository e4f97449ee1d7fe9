#!/bin/bash
# Outputs right on awkward inputs, and the ptrace backend faithful to
# signals (issue 13): a program on a 10 ms timer sampled whole under --wall
# and the ptrace fallback; Ctrl-C through ptrace; -F capped; diffs of
# multi-process runs matched; names that are not UTF-8 or hold terminal
# escapes cleaned everywhere; report's options and ids checked.
source "$(dirname "$0")/lib.sh"

# a program living on SIGALRM: every tick delivered, the whole run recorded
$TARGETS/timer_prog 1.5 >$W/bare.out; bt=$(awk '/^ticks/ {print $2}' $W/bare.out)
for mode in wall ptrace; do
  if [ $mode = wall ]; then args="--wall"; env=; m=wall; else args=; env="KILN_FORCE_PTRACE=1"; m=cpu; fi
  env $env "$KILN" record -q $args -o $W/$mode.kiln -- $TARGETS/timer_prog 1.5 >$W/$mode.out 2>$W/$mode.err
  eq $? 0 "$mode: exit status of a program on a 10 ms timer"
  tk=$(awk '/^ticks/ {print $2}' $W/$mode.out)
  [ "${tk:-0}" -ge $((bt * 8 / 10)) ] || fail "$mode: the program got ${tk:-0} timer signals, $bt bare"
  d=$("$KILN" report $W/$mode.kiln 2>/dev/null | sed -n 's/^# duration \([0-9.]*\) s.*/\1/p')
  awk -v d="$d" 'BEGIN { exit !(d >= 1.4) }' || fail "$mode: recording ended after $d s of a 1.5 s program"
  n=$(total $(folded $W/$mode.kiln $m)); [ "$n" -ge 40 ] || fail "$mode: $n samples of a 1.5 s program"
done
ok "timer program whole under --wall and ptrace: $tk of $bt ticks"

# --wall samples are the time that passed: a tick kiln took late is charged
# to the next samples (cpu_split's one thread: its samples x the period =
# the duration);
# a recorder stopped for 2 s charges at most a second of it, the rest
# counted and said
wall_total() { # FILE: samples + ticks not charged, duration x 99 Hz
  local n d u
  n=$(total $(folded $1 wall)); d=$("$KILN" report $1 | sed -n 's/^# duration \([0-9.]*\) s.*/\1/p')
  u=$("$KILN" report $1 | sed -n 's/^# wall: \([0-9]*\) ticks\? NOT charged.*/\1/p')
  echo $((n + ${u:-0})) $(awk -v d=$d 'BEGIN { printf "%d", d * 99 }')
}
"$KILN" record -q --wall -o $W/w1.kiln -- $TARGETS/cpu_split 1 >/dev/null 2>&1 || fail "record --wall cpu_split"
read n want < <(wall_total $W/w1.kiln)
within $n $want $((want / 10 + 2)) || fail "--wall: $n samples in $want ticks' time"
"$KILN" record -q --wall -o $W/stop.kiln -- $TARGETS/cpu_split 3 >/dev/null 2>&1 & KP=$!
sleep 0.5; kill -STOP $KP; sleep 2; kill -CONT $KP; wait $KP; eq $? 0 "--wall with the recorder stopped 2 s"
grep -qE '^# wall: [0-9]+ ticks? NOT charged' <("$KILN" report $W/stop.kiln) || fail "a 2 s gap not said: $("$KILN" report $W/stop.kiln | head -5)"
read n2 want2 < <(wall_total $W/stop.kiln)
within $n2 $want2 $((want2 / 10 + 2)) || fail "--wall stopped 2 s: $n2 samples and ticks not charged in $want2 ticks' time"
ok "--wall samples are the time: $n in $want ticks' time; recorder stopped 2 s: $n2 charged or counted of $want2"

# Ctrl-C (SIGINT to the process group, as a terminal sends it) through ptrace: 130
setsid bash -c 'echo $$ >'$W'/pg; exec "$0" record -q --wall -o "$1" -- "$2" 30' "$KILN" $W/int.kiln $TARGETS/cpu_split >/dev/null 2>&1 & KP=$!
for i in $(seq 100); do [ -s $W/pg ] && pgrep -P $(cat $W/pg) >/dev/null && break; sleep 0.05; done; sleep 0.3
kill -INT -- -$(cat $W/pg); wait $KP; eq $? 130 "Ctrl-C under --wall (ptrace)"
"$KILN" report $W/int.kiln >/dev/null || fail "no profile after Ctrl-C under ptrace"
ok "Ctrl-C through ptrace: 130, profile kept"

# -F beyond what the machine takes: capped, and said
"$KILN" record -F 100000 -o $W/f.kiln -- true 2>$W/f.err; eq $? 0 "-F 100000 -- true"
grep -q 'sampling at [0-9]* Hz' $W/f.err || fail "-F 100000 not capped: $(cat $W/f.err)"
"$KILN" export $W/f.kiln --format json | python3 -c "import json,sys; f=json.load(sys.stdin)['meta']['frequency']; assert f <= 10000, f" \
  || fail "-F 100000: the profile says it sampled faster than the cap"
ok "-F capped with a notice"

# two runs of a forking program: the diff matches their processes
run_to 60 "$KILN" record -q --heap --no-cpu -o $W/m1.kiln -- $TARGETS/fork_many 5 >/dev/null || fail "fork_many 1"
run_to 60 "$KILN" record -q --heap --no-cpu -o $W/m2.kiln -- $TARGETS/fork_many 5 >/dev/null || fail "fork_many 2"
"$KILN" diff $W/m1.kiln $W/m2.kiln --metric leak_bytes --format folded -o $W/md.f 2>$W/md.err || fail "diff"
grep -q 'matched by program and start order' $W/md.err || fail "diff does not say how it matched processes"
awk '/child_work/ { v=$NF; if (v<0) v=-v; s+=v } END { exit !(s == 0) }' $W/md.f || fail "identical runs differ: $(head -3 $W/md.f)"
"$KILN" diff $W/m1.kiln $W/m2.kiln --metric leak_bytes --by stack --json >$W/md.json 2>/dev/null || fail "diff json"
python3 -c "import json; d=json.load(open('$W/md.json')); assert d['delta_total']==0, d['delta_total']" || fail "identical runs: delta"
ok "diff of multi-process runs: matched by program and order"

# names that are not UTF-8 and hold terminal escapes (timer_prog's thread)
"$KILN" flamegraph $W/wall.kiln --threads -o $W/w.svg || fail "flamegraph"
python3 -c "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])" $W/w.svg || fail "SVG ill-formed"
for fmt in json speedscope; do
  "$KILN" export $W/wall.kiln --format $fmt --threads -o $W/w.$fmt || fail "export $fmt"
  python3 -c "import json,sys; json.load(open(sys.argv[1]))" $W/w.$fmt || fail "$fmt invalid"
done
python3 - $W/w.json <<'PY' || fail "JSON dropped a thread's name"
import json, sys
d = json.load(open(sys.argv[1]))
names = [t['name'] for t in d['threads']]
assert any('\\xff' in n for n in names), names
for c in d['cells']: assert 'name' in c, c
PY
"$KILN" report $W/wall.kiln --metric wall --by stack --threads --limit 100 --all-frames >$W/rep 2>&1
grep -q $'\x1b' $W/rep && fail "report printed a raw terminal escape"
grep -q 'w\\xff\\xfe\\x1b\[31mx' $W/rep || fail "the odd name is not shown escaped: $(grep -m2 '\\x' $W/rep)"
"$KILN" export $W/wall.kiln --format folded --threads | grep -q $'\x1b' && fail "folded output holds a raw escape"
ok "odd names: escaped in report, folded, SVG, JSON, speedscope"

# report: its options and the ids it is given are checked
"$KILN" report $W/wall.kiln --pid 99 >/dev/null 2>$W/e; eq $? 1 "report --pid of no process"
grep -q 'no process 99' $W/e && [ $(wc -l <$W/e) = 1 ] || fail "report --pid 99: $(cat $W/e)"
"$KILN" report $W/wall.kiln --tid 99 >/dev/null 2>&1; eq $? 1 "report --tid of no thread"
"$KILN" export $W/wall.kiln --format folded --pid 99 >/dev/null 2>&1; eq $? 1 "export --pid of no process"
for o in "--title x" "--inverted" "--format svg"; do
  "$KILN" report $W/wall.kiln $o >/dev/null 2>&1; eq $? 2 "report $o (not a report option)"
done
"$KILN" report $W/wall.kiln -o $W/r.txt >/dev/null || fail "report -o"
grep -q '^# kiln profile' $W/r.txt || fail "report -o wrote nothing"
"$KILN" report $W/wall.kiln --format json | python3 -c "import json,sys; json.load(sys.stdin)" || fail "report --format json"
"$KILN" report $W/m1.kiln --metric leak_bytes --by process >$W/bp || fail "--by process"
eq $(grep -v '^#' $W/bp | grep -c 'fork_many-') 6 "--by process: the parent and its 5 children"
grep -q '^# duration .* 6 processes' $W/bp || fail "header process count: $(sed -n 2p $W/bp)"
ok "report: -o, --format, --by process; wrong options and unknown ids refused in one line"

# record -p: a kernel thread refused; a thread id means its process
"$KILN" record -p 2 -d 0.2 -o $W/k.kiln >/dev/null 2>$W/e; eq $? 1 "record -p of a kernel thread"
grep -q 'kernel thread' $W/e || fail "kernel thread: $(cat $W/e)"
$TARGETS/threads 3 >/dev/null & TP=$!; sleep 0.3
TID=$(ls /proc/$TP/task | grep -v "^$TP\$" | head -1)
"$KILN" record -p $TID -d 0.5 -o $W/tid.kiln >/dev/null 2>$W/e || fail "record -p TID: $(cat $W/e)"
grep -q "thread of process $TP" $W/e || fail "record -p TID does not say it records the process: $(cat $W/e)"
"$KILN" report $W/tid.kiln | grep -q ', 1 process,' || fail "record -p TID: $("$KILN" report $W/tid.kiln | sed -n 2p)"
kill $TP 2>/dev/null; wait $TP 2>/dev/null
ok "record -p: kernel thread refused, a thread id records its process"

# attach to 700 threads under `ulimit -n 1024` (perf_event needs a
# descriptor per thread and CPU): kiln raises its own soft limit, as perf does
if [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -gt 4096 ]; then
  $TARGETS/thread_pool 700 10 6 >$W/tp.out & TP=$!
  for i in $(seq 100); do grep -q 'all alive' $W/tp.out && break; sleep 0.1; done
  (ulimit -Sn 1024; run_to 60 "$KILN" record -q -p $TP -d 0.5 -o $W/t700.kiln >/dev/null 2>$W/e) || fail "attach to 700 threads under ulimit -n 1024: $(cat $W/e)"
  "$KILN" report $W/t700.kiln >/dev/null || fail "attach to 700 threads: no profile"
  kill $TP 2>/dev/null; wait $TP 2>/dev/null
  ok "attach to 700 threads under ulimit -n 1024"
else
  skip "700 threads under ulimit -n 1024 (the hard limit is $(ulimit -Hn))"
fi

# every exporter shows the same frames for the same profile: folded, JSON's
# stack frames and pprof, stack by stack (tail-call and inlined frames too)
run_to 60 "$KILN" record -q -o $W/inl.kiln -- $TARGETS/inlined >/dev/null 2>&1 || fail "record inlined"
for f in $W/inl.kiln $W/wall.kiln; do
  "$KILN" export $f --format folded -o $W/same.folded || fail "folded"
  "$KILN" export $f --format json -o $W/same.json || fail "json"
  python3 - $W/same.json $W/same.folded <<'PY' || fail "JSON stacks differ from folded ($f)"
import json, sys
from collections import defaultdict
d = json.load(open(sys.argv[1])); m = d['meta'].get('events', ['cpu'])[0]
got = defaultdict(int)
for c in d['cells']:
    if c.get(m): got[';'.join(d['stacks'][c['stack']]['frames'])] += c[m]
want = defaultdict(int)
for line in open(sys.argv[2]):
    s, n = line.rsplit(' ', 1); want[s] += int(n)
assert got == want, (set(got) ^ set(want))
PY
  "$KILN" export $f --format pprof -o $W/same.pb.gz || fail "pprof"
  python3 $SRC/tests/integration/pprof_decode.py $W/same.pb.gz $W/same.folded >/dev/null || fail "pprof stacks differ from folded ($f)"
done
ok "folded, JSON and pprof show the same frames"

# diff compares shares by default for CPU (two runs of other lengths, same
# split: no change), counts with --raw; --sort self compares self values
run_to 60 "$KILN" record -q -o $W/s1.kiln -- $TARGETS/split_ab 1 1 1 >/dev/null || fail "split_ab 1"
run_to 60 "$KILN" record -q -o $W/s2.kiln -- $TARGETS/split_ab 1 1 2 >/dev/null || fail "split_ab 2"
"$KILN" diff $W/s1.kiln $W/s2.kiln --json >$W/n.json || fail "diff (normalized)"
python3 - $W/n.json <<'PY' || fail "normalized diff: $(head -c 400 $W/n.json)"
import json, sys
d = json.load(open(sys.argv[1])); r = {x['name']: x for x in d['rows']}
assert d['normalized'] and 1.7 < d['base_scale'] < 2.3, d.get('base_scale')
for f in ('alpha', 'beta'):
    if f in r: assert abs(r[f]['delta']) < 0.12 * d['new_total'], (f, r[f])
PY
"$KILN" diff $W/s1.kiln $W/s2.kiln --raw --json >$W/r.json || fail "diff --raw"
python3 -c "import json; d=json.load(open('$W/r.json')); r={x['name']:x for x in d['rows']}; assert not d['normalized'] and r['alpha']['delta_pct'] > 60, r['alpha']" \
  || fail "diff --raw: $(head -c 300 $W/r.json)"
"$KILN" diff $W/s1.kiln $W/s2.kiln --raw --sort self --json >$W/ss.json || fail "diff --sort self"
python3 -c "import json; d=json.load(open('$W/ss.json')); r={x['name']:x for x in d['rows']}; assert 'main' not in r or abs(r['main']['delta']) < 20, r.get('main')" \
  || fail "diff --sort self compared totals"
"$KILN" diff $W/s1.kiln $W/s2.kiln | grep -q 'shares compared' || fail "diff does not say it compared shares"
"$KILN" diff $W/s1.kiln $W/s2.kiln --raw --normalize >/dev/null 2>&1; eq $? 2 "--raw with --normalize"
"$KILN" report $W/s1.kiln --raw >/dev/null 2>&1; eq $? 2 "report --raw (a diff option)"
ok "diff: shares by default for CPU, counts with --raw, --sort self"

# kernel frames where the kernel allows them (root), named _[k] below the
# user frames that entered the kernel; otherwise said, in the record and report
if [ "$(id -u)" = 0 ]; then
  run_to 60 "$KILN" record -q -o $W/k.kiln -- $TARGETS/syscall_loop >/dev/null || fail "record syscall_loop"
  F=$(folded $W/k.kiln cpu)
  grep -qE ';(__libc_read|read);.*do_syscall_64_\[k\].*read_zero_\[k\]' $F || fail "no kernel frames under read: $(sort -k2 -n $F | tail -2)"
  "$KILN" export $W/k.kiln --format json | python3 -c "import json,sys; assert json.load(sys.stdin)['meta']['kernel_stacks'] is True"
  ok "kernel frames: read -> do_syscall_64_[k] -> ... read_zero_[k]"
  if id kilnt >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin kilnt 2>/dev/null; then
    chmod 755 $W; mkdir -p $W/u; chown kilnt $W/u
    runuser -u kilnt -- "$KILN" record -o $W/u/k.kiln -- $TARGETS/syscall_loop >/dev/null 2>$W/u.err
    if grep -q 'sampling with ptrace' $W/u.err; then
      skip "kernel-stack notice for a user (perf_event_open refused to users here)"
    else
      grep -q 'kernel stacks not recorded' $W/u.err || fail "a user's recording does not say kernel stacks are missing: $(cat $W/u.err)"
      "$KILN" report $W/u/k.kiln | grep -q '# kernel stacks: not recorded' || fail "report does not say kernel stacks are missing"
      ok "no kernel stacks for a user: said in the record and the report"
    fi
  fi
else
  skip "kernel frames (need root or perf_event_paranoid <= 1)"
fi
