#!/bin/bash
# Heap snapshots of a live program and diffs: exact live bytes, exact
# growth and shrinkage in the table, JSON and folded output; CPU diffs;
# snapshots taken fast on a program with 100,000 live blocks.
source "$(dirname "$0")/lib.sh"
D=$W/ctl; mkdir $D
await() { for i in $(seq 200); do [ -e $1 ] && return 0; sleep 0.05; done; fail "timed out waiting for $1"; }
"$KILN" record -q --heap -o $W/rec.kiln -- $TARGETS/snap_prog $D & KP=$!
await $D/ready1
PID=$(pgrep -f "$TARGETS/snap_prog $D" | grep -v "^$KP\$" | head -1)
out=$("$KILN" snapshot $PID -o $W/s1.snap) || fail "snapshot 1"
eq "$out" "$W/s1.snap" "snapshot prints its file"
touch $D/go1; await $D/ready2
"$KILN" snapshot $PID -o $W/s2.snap >/dev/null || fail "snapshot 2"
touch $D/go2; wait $KP; eq $? 0 "record exit"
F=$(folded $W/s1.snap live_bytes); eq $(weight $F '^keep_first$') 1000000 "live in keep_first at snapshot 1"
C=$(folded $W/s1.snap live_count); eq $(weight $C '^keep_first$') 100 "blocks of keep_first at snapshot 1"
"$KILN" report $W/s1.snap >$W/rep || fail "report of a snapshot"
grep -q 'heap snapshot of' $W/rep && grep -q 'metric live_bytes' $W/rep || fail "snapshot report: $(head -4 $W/rep)"
"$KILN" diff $W/s1.snap $W/s2.snap >$W/d || fail diff
grep -qE '^ *0 B +2\.86 MiB +\+ *2\.86 MiB +new +keep_second' $W/d || fail "diff table keep_second: $(cat $W/d)"
grep -qE '976\.56 KiB +488\.28 KiB +- *488\.28 KiB +-50\.0% +keep_first' $W/d || fail "diff table keep_first: $(cat $W/d)"
grep -q 'TOTAL' $W/d || fail "diff total line"
"$KILN" diff $W/s1.snap $W/s2.snap --json >$W/d.json || fail "diff --json"
python3 - $W/d.json <<'PY' || fail "diff json"
import json, sys
d = json.load(open(sys.argv[1])); rows = {r["name"]: r for r in d["rows"]}
assert rows["keep_second"]["delta"] == 3000000 and rows["keep_second"]["base"] == 0
assert rows["keep_first"]["delta"] == -500000 and rows["keep_first"]["delta_pct"] == -50.0
assert d["metric"] == "live_bytes" and d["delta_total"] == 2500000, d["delta_total"]
PY
"$KILN" diff $W/s1.snap $W/s2.snap --format folded >$W/d.f || fail "diff folded"
eq $(weight $W/d.f '^keep_second$') 3000000 "folded growth"
grep -qE ';keep_first -500000$' $W/d.f || fail "folded shrinkage: $(cat $W/d.f)"
"$KILN" diff $W/s1.snap $W/s2.snap --format svg -o $W/d.svg || fail "diff svg"
grep -q 'keep_second' $W/d.svg && grep -q 'rgb(250,' $W/d.svg || fail "differential flamegraph"
# the end of the recording against a snapshot: leaks stand for live blocks
"$KILN" diff $W/s1.snap $W/rec.kiln --metric live_bytes --json >$W/e.json || fail "snapshot vs recording"
python3 -c "import json; d=json.load(open('$W/e.json')); r={x['name']:x for x in d['rows']}; assert r['keep_second']['delta']==3000000 and r['keep_first']['delta']==-500000, d" || fail "recording's end as a snapshot"
ok "snapshots: +3,000,000 / -500,000 exact in table, json, folded, svg"

# CPU diff of two recordings with different splits
run_to 30 "$KILN" record -q -o $W/c1.kiln -- $TARGETS/split_ab 3 1 1 || fail "record 3:1"
run_to 30 "$KILN" record -q -o $W/c2.kiln -- $TARGETS/split_ab 1 3 1 || fail "record 1:3"
"$KILN" diff $W/c1.kiln $W/c2.kiln --json >$W/c.json || fail "cpu diff"
python3 - $W/c.json <<'PY' || fail "cpu diff numbers"
import json, sys
d = json.load(open(sys.argv[1])); rows = {r["name"]: r for r in d["rows"]}
assert d["metric"] == "cpu"
a, b = rows["alpha"], rows["beta"]
assert a["delta"] < -300 and b["delta"] > 300, (a, b)
assert 40 < -a["delta_pct"] < 80 and b["delta_pct"] > 100, (a, b)
assert "spin" not in rows or abs(rows["spin"]["delta"]) < 100
PY
"$KILN" diff $W/c1.kiln $W/c2.kiln --by stack --format folded >$W/c.f || fail "cpu diff folded"
da=$(weight $W/c.f '^alpha$'); db=$(weight $W/c.f '^beta$')
[ "$da" -lt -300 ] && [ "$db" -gt 300 ] || fail "cpu diff alpha $da beta $db"
"$KILN" diff $W/c1.kiln $W/c2.kiln --by stack >$W/c.t || fail "cpu diff table"
grep -q 'alpha;spin' $W/c.t && grep -q 'beta;spin' $W/c.t || fail "cpu diff by stack names alpha/beta"
ok "cpu diff: alpha $da, beta $db"

# snapshot speed with 100,000 live blocks; the program keeps running
rm -f $D/*
"$KILN" record -q --heap --no-cpu -o $W/big.kiln -- $TARGETS/snap_prog $D 100000 & KP=$!
await $D/ready1
PID=$(pgrep -f "$TARGETS/snap_prog $D" | grep -v "^$KP\$" | head -1)
best=999999
for i in 1 2 3; do
  s=$(date +%s%N); "$KILN" snapshot $PID -o $W/big$i.snap >/dev/null || fail "big snapshot"; ms=$(( ($(date +%s%N) - s) / 1000000 ))
  [ $ms -lt $best ] && best=$ms
done
# the figure is printed (its target, 100 ms, is a benchmark's: under the
# sanitizers, beside a busy host, it took 105 ms once); a bound ten times
# over it is a snapshot that hangs or walks the heap slowly
[ $best -lt 1000 ] || fail "snapshot of 100,000 live blocks took $best ms"
C=$(folded $W/big1.snap live_count); eq $(weight $C '^keep_many$') 100001 "live blocks in keep_many"
touch $D/go1 $D/go2; wait $KP; eq $? 0 "record exit"
ok "snapshot of 100,000 live blocks in $best ms"

# --snapshot-every writes numbered snapshots
rm -f $D/*
"$KILN" record -q --heap --no-cpu --snapshot-every 0.2 -o $W/ev.kiln -- $TARGETS/snap_prog $D & KP=$!
await $D/ready1; sleep 0.5; touch $D/go1; await $D/ready2; sleep 0.5; touch $D/go2; wait $KP
[ -s $W/ev.kiln.snap.1 ] && [ -s $W/ev.kiln.snap.2 ] || fail "no numbered snapshots: $(ls $W)"
last=$(ls $W/ev.kiln.snap.* | sort -t. -k4 -n | tail -1)
F=$(folded $last live_bytes); eq $(weight $F '^keep_second$') 3000000 "last periodic snapshot"
ok "--snapshot-every"

# a forked child of the launched program (sh forks, the child execs snap_prog)
rm -f $D/*
"$KILN" record -q --heap --no-cpu -o $W/sh.kiln -- sh -c "$TARGETS/snap_prog $D; true" & KP=$!
await $D/ready1
CPID=$(pgrep -f "^$TARGETS/snap_prog $D" | head -1)
[ -n "$CPID" ] || fail "no snap_prog child"
"$KILN" snapshot $CPID -o $W/child.snap >/dev/null || fail "snapshot of a forked child"
F=$(folded $W/child.snap live_bytes); eq $(weight $F '^keep_first$') 1000000 "the child's live heap"
touch $D/go1 $D/go2; wait $KP; eq $? 0 "record sh exit"
F=$(folded $W/sh.kiln leak_bytes); grep -q "^snap_prog-$CPID;" $F || fail "child process frame: $(cut -c1-60 $F | head -3)"
ok "snapshot of a forked child"
