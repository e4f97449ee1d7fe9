#!/bin/bash
# Memory over time: the timeline's heap maximum is the reported peak to the
# byte (peak_seq across exec and across sequential children, rss_grow that
# grows, frees and grows again), RSS follows touched memory, a CPU-only
# recording still has RSS, and the Firefox export is a well-formed processed
# profile (every table's columns as long as its length, every index in
# range) with memory counters.
source "$(dirname "$0")/lib.sh"
csv_max() { awk -F, -v c=$2 'NR > 1 && $c != "" && $c > m {m = $c} END {printf "%d\n", m}' "$1"; }
rows() { echo $(($(wc -l <"$1") - 1)); }

run_to 60 "$KILN" record -q --heap -o $W/ex.kiln -- $TARGETS/peak_seq exec >/dev/null || fail "record peak_seq exec"
eq $(total $(folded $W/ex.kiln peak_bytes)) 157286400 "peak of peak_seq exec (150 MiB: the first image is gone at exec)"
"$KILN" export $W/ex.kiln --format timeline -o $W/ex.csv || fail "export timeline"
head -1 $W/ex.csv | grep -qx 'seconds,pid,heap_live_bytes,rss_bytes' || fail "timeline header: $(head -1 $W/ex.csv)"
# a point a millisecond for the first 2 s, as the recorder's loop comes round:
# under the sanitizers beside a busy host it came round 18 times in this
# 0.1 s run once, so there the bar is 10
minpts=20; [ -n "${KILN_REDUCED:-}" ] && minpts=10
[ $(rows $W/ex.csv) -ge $minpts ] || fail "peak_seq exec: $(rows $W/ex.csv) timeline points in 0.1 s (want $minpts)"
eq $(csv_max $W/ex.csv 3) 157286400 "timeline maximum of peak_seq exec"
awk -F, 'NR > 2 && $1 < t {exit 1} {t = $1}' $W/ex.csv || fail "timeline not in time order"
"$KILN" report $W/ex.kiln >$W/rep || fail report
grep -q '^# heap: .*peak 150.00 MiB' $W/rep || fail "report's peak: $(grep '^# heap' $W/rep | head -1)"
grep -q '^# heap over time: ' $W/rep || fail "no sparkline in the report: $(head -5 $W/rep)"
ok "peak_seq exec: peak 150 MiB, $(rows $W/ex.csv) points, maximum = peak"

run_to 60 "$KILN" record -q --heap -o $W/seq.kiln -- $TARGETS/peak_seq seq >/dev/null || fail "record peak_seq seq"
P=$(total $(folded $W/seq.kiln peak_bytes))
within $P 104857600 8192 || fail "peak of peak_seq seq: $P B, want 100 MiB (three children one after another)"
"$KILN" export $W/seq.kiln --format timeline -o $W/seq.csv || fail "export timeline seq"
eq $(csv_max $W/seq.csv 3) $P "timeline maximum of peak_seq seq (pid 0: all processes)"
grep -q '^[0-9.]*,0,' $W/seq.csv || fail "no all-processes rows in a multi-process timeline"
n=$(cut -d, -f2 $W/seq.csv | grep -v '^0$' | sort -u | grep -c '^[0-9]')
[ $n -ge 4 ] || fail "peak_seq seq: $n processes in the timeline, want 4"
ok "peak_seq seq: peak $P B (one child at a time), $n processes"

run_to 60 "$KILN" record -q --heap -o $W/rg.kiln -- $TARGETS/rss_grow >/dev/null || fail "record rss_grow"
P=$(total $(folded $W/rg.kiln peak_bytes))
eq $(weight $(folded $W/rg.kiln peak_bytes) '^grow_b$') 50331648 "grow_b at the peak"
"$KILN" export $W/rg.kiln --format timeline -o $W/rg.csv || fail "export timeline rss_grow"
eq $(csv_max $W/rg.csv 3) $P "timeline maximum of rss_grow"
r=$(csv_max $W/rg.csv 4); [ $r -ge 50331648 ] || fail "RSS max $r B, want >= 48 MiB (grow_b touched it)"
last=$(awk -F, 'NR > 1 && $4 != "" {r = $4} END {print r}' $W/rg.csv)
[ $last -lt 33554432 ] || fail "RSS stays at $last B after the blocks were freed"
ok "rss_grow: maximum = peak = $P B, RSS max $r B, falls to $last B"
# the flamegraph opens with the chart: heap and RSS curves, the peak marked
"$KILN" flamegraph $W/rg.kiln --metric peak_bytes -o $W/rg.svg || fail "flamegraph of rss_grow"
grep -q 'id="heap_curve"' $W/rg.svg && grep -q 'id="rss_curve"' $W/rg.svg || fail "no memory chart in the heap flamegraph"
grep -q '<title>peak 48.00 MiB at ' $W/rg.svg || fail "the chart does not mark the 48 MiB peak: $(grep -o 'peak_mark.*</title>' $W/rg.svg)"
xmllint --noout $W/rg.svg 2>/dev/null || python3 -c "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])" $W/rg.svg || fail "the SVG with its chart is not well-formed XML"
ok "heap flamegraph: memory chart with both curves, the peak marked"

run_to 60 "$KILN" record -q -o $W/cpu.kiln -- $TARGETS/rss_grow >/dev/null || fail "record rss_grow without --heap"
"$KILN" export $W/cpu.kiln --format timeline -o $W/cpu.csv || fail "export timeline of a CPU profile"
r=$(csv_max $W/cpu.csv 4); [ $r -ge 50331648 ] || fail "CPU-only timeline: RSS max $r B"
awk -F, 'NR > 1 && $3 != "" {exit 1}' $W/cpu.csv || fail "a CPU-only timeline shows a heap"
ok "without --heap: RSS over time ($(rows $W/cpu.csv) points, max $r B)"
"$KILN" flamegraph $W/cpu.kiln -o $W/cpu.svg || fail "flamegraph of the CPU profile"
grep -q 'id="rss_curve"' $W/cpu.svg && ! grep -q 'id="heap_curve"' $W/cpu.svg || fail "a CPU flamegraph's chart: RSS alone"

run_to 60 "$KILN" record -q --heap -o $W/lk.kiln -- $TARGETS/leaky >/dev/null || fail "record leaky"
for f in rg seq lk; do
  "$KILN" export $W/$f.kiln --format firefox -o $W/$f.json || fail "export firefox $f"
  out=$(python3 - $W/$f.json <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
m = p["meta"]
for k, t in (("version", int), ("preprocessedProfileVersion", int), ("interval", (int, float)), ("startTime", (int, float)), ("categories", list)):
    assert isinstance(m.get(k), t), "meta." + k
assert isinstance(p["libs"], list) and p["threads"], "libs / threads"
def table(t, cols, name):
    for c in cols:
        assert c in t, name + "." + c
        assert len(t[c]) == t["length"], "%s.%s: %d values, length %d" % (name, c, len(t[c]), t["length"])
def idx(v, n, name, null=False):
    assert (null and v is None) or (isinstance(v, int) and 0 <= v < n), "%s: %r not in [0, %d)" % (name, v, n)
ncat = len(m["categories"])
for th in p["threads"]:
    for k in ("processType", "name", "pid", "tid", "isMainThread", "registerTime", "pausedRanges", "stringArray"):
        assert k in th, "thread." + k
    assert isinstance(th["pid"], str), "pid is a string from version 47"
    s, st, fr, fn = th["samples"], th["stackTable"], th["frameTable"], th["funcTable"]
    table(s, ("stack", "time", "weight"), "samples")
    assert s["weightType"] in ("samples", "bytes", "tracing-ms")
    table(st, ("frame", "prefix", "category", "subcategory"), "stackTable")
    table(fr, ("address", "inlineDepth", "category", "subcategory", "func", "nativeSymbol", "innerWindowID", "implementation", "line", "column"), "frameTable")
    table(fn, ("name", "isJS", "relevantForJS", "resource", "fileName", "lineNumber", "columnNumber"), "funcTable")
    table(th["markers"], ("data", "name", "startTime", "endTime", "phase", "category"), "markers")
    table(th["resourceTable"], ("lib", "name", "host", "type"), "resourceTable")
    table(th["nativeSymbols"], ("libIndex", "address", "name", "functionSize"), "nativeSymbols")
    ns = len(th["stringArray"])
    for v in s["stack"]: idx(v, st["length"], "samples.stack", True)
    for i in range(st["length"]):
        idx(st["frame"][i], fr["length"], "stack.frame"); idx(st["category"][i], ncat, "stack.category")
        if st["prefix"][i] is not None: idx(st["prefix"][i], i, "stack.prefix (a parent comes first)")
    for i in range(fr["length"]): idx(fr["func"][i], fn["length"], "frame.func"); idx(fr["category"][i], ncat, "frame.category")
    for i in range(fn["length"]): idx(fn["name"][i], ns, "func.name"); idx(fn["fileName"][i], ns, "func.fileName", True)
tids = len(p["threads"])
mem = [c for c in p["counters"] if c["category"] == "Memory" and c["name"] == "Memory"]
assert mem, "no memory counter"
for c in p["counters"]:
    assert isinstance(c["pid"], str); idx(c["mainThreadIndex"], tids, "counter.mainThreadIndex")
    table(c["samples"], ("time", "count"), "counter.samples")
# the memory track adds up the counts: its largest running sum is the peak
best = max(max(__import__("itertools").accumulate(c["samples"]["count"])) for c in mem)
# native allocations (the balanced table): retained memory as the profiler
# finds it, an allocation whose address no later deallocation names
alloc = retained = 0
for th in p["threads"]:
    na = th.get("nativeAllocations")
    if not na:
        continue
    table(na, ("time", "weight", "stack", "memoryAddress", "threadId"), "nativeAllocations")
    assert na["weightType"] == "bytes"
    live = {}
    for i in range(na["length"]):
        idx(na["stack"][i], th["stackTable"]["length"], "nativeAllocations.stack", True)
        assert na["threadId"][i] == th["tid"]
        w, a = na["weight"][i], na["memoryAddress"][i]
        if w >= 0:
            alloc += w; live[a] = w
        else:
            assert live.pop(a) == -w, "a deallocation of another size than its allocation"
    retained += sum(live.values())
print(best, alloc, retained)
PY
  ) || fail "Firefox export of $f is malformed"
  set -- $out
  eq $2 $(total $(folded $W/$f.kiln alloc_bytes)) "$f: Firefox native allocations, bytes"
  eq $3 $(total $(folded $W/$f.kiln leak_bytes)) "$f: Firefox retained memory (leaked bytes)"
  [ $f = lk ] && { [ $3 -ge 9609216 ] || fail "leaky: Firefox retained memory $3 B, its own leaks alone are 9,609,216 B"; }
done
# samples placed in time by the windows: in order, spread over the run, all of them
read -r sum times sorted < <(python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
ts = [t for th in p["threads"] for t in th["samples"]["time"]]
print(sum(w for th in p["threads"] for w in th["samples"]["weight"]), len(set(ts)),
      int(all(th["samples"]["time"] == sorted(th["samples"]["time"]) for th in p["threads"])))' $W/rg.json)
eq $sum $(total $(folded $W/rg.kiln cpu)) "rss_grow: Firefox samples' weight"
eq $sorted 1 "Firefox samples in time order"
[ $times -ge 10 ] || fail "rss_grow: Firefox samples at only $times times"
ok "Firefox export: processed profile v48, tables whole, memory counters, native allocations whose retained memory is the leaks, samples at $times times"

# Stretches of time (--time: the time windows). Over the whole run the
# windows add up to every total, and what is live at its end is the leaks,
# exactly: across exec (ex), sequential children (seq), a CPU-only run (cpu).
for f in ex seq rg lk cpu; do
  for m in alloc_bytes alloc_count cpu; do
    [ $f = cpu ] && [ $m != cpu ] && continue
    cmp -s $(folded $W/$f.kiln $m) $(folded $W/$f.kiln $m --time 0..) || fail "$f: $m of every window is not its total"
  done
  [ $f = cpu ] && continue
  cmp -s $(folded $W/$f.kiln leak_bytes) $(folded $W/$f.kiln live_bytes --time 0..) || fail "$f: live_bytes at the end is not leak_bytes"
  cmp -s $(folded $W/$f.kiln leak_count) $(folded $W/$f.kiln live_count --time 0..) || fail "$f: live_count at the end is not leak_count"
done
ok "every window together: alloc_*, cpu are the totals, live_* at the end the leaks (exec, children, CPU-only)"
# rss_grow cut in two between grow_a's and grow_b's blocks: each half holds
# its own, the halves add up, and grow_a's block is live at the cut
ta=$(awk -F, 'NR > 1 && $3 >= 33554432 { print $1; exit }' $W/rg.csv); tb=$(awk -F, 'NR > 1 && $3 >= 50331648 { print $1; exit }' $W/rg.csv)
mid=$(awk -v a=$ta -v b=$tb 'BEGIN { printf "%.6f", (a + b) / 2 }')
"$KILN" report $W/rg.kiln --time $mid..$mid --metric alloc_bytes >$W/cut.rep || fail "report --time"
edge=$(sed -n 's/^# time: \([0-9.]*\) s to .*/\1/p' $W/cut.rep)
[ -n "$edge" ] || fail "report --time does not say the stretch: $(head -4 $W/cut.rep)"
A=$(folded $W/rg.kiln alloc_bytes --time ..$(awk -v e=$edge 'BEGIN { print e - 0.001 }'))
B=$(folded $W/rg.kiln alloc_bytes --time $(awk -v e=$edge 'BEGIN { print e + 0.001 }')..)
eq $(weight $A '^grow_a$') 33554432 "grow_a before the cut at $edge s"
eq $(weight $A '^grow_b$') 0 "grow_b before the cut"
eq $(weight $B '^grow_b$') 50331648 "grow_b after the cut"
eq $(( $(total $A) + $(total $B) )) $(total $(folded $W/rg.kiln alloc_bytes)) "the two halves together"
L=$(folded $W/rg.kiln live_bytes --time ..$(awk -v e=$edge 'BEGIN { print e - 0.001 }'))
eq $(weight $L '^grow_a$') 33554432 "grow_a's block live at the cut"
grep -q "^# heap in 0.000-[0-9.]* s: 32.00 MiB allocated" <("$KILN" report $W/rg.kiln --time ..$(awk -v e=$edge 'BEGIN { print e - 0.001 }')) \
  || fail "report --time: the heap line does not hold the stretch"
"$KILN" flamegraph $W/rg.kiln --time $(awk -v e=$edge 'BEGIN { print e + 0.001 }').. --metric alloc_bytes -o $W/late.svg || fail "flamegraph --time"
grep -q "alloc_bytes: 48.00 MiB in $edge-[0-9.]* s (--time)" $W/late.svg || fail "flamegraph --time: $(grep -o 'alloc_bytes: [^<]*' $W/late.svg)"
grep -q '<title>grow_b (48.00 MiB, ' $W/late.svg || fail "flamegraph --time: grow_b's 48 MiB not drawn"
# diff of one run at two moments (--time twice: BASE's, NEW's): grow_a's block went
cut=$(awk -v e=$edge 'BEGIN { print e - 0.001 }')
"$KILN" diff $W/rg.kiln $W/rg.kiln --time ..$cut --time 0.. --metric live_bytes --format folded >$W/d.folded || fail "diff --time twice"
grep -q ';grow_a -33554432$' $W/d.folded || fail "diff of live_bytes from $cut s to the end: $(cat $W/d.folded)"
"$KILN" diff $W/rg.kiln $W/rg.kiln --time 0..1 --time 0..1 --time 0..1 >/dev/null 2>&1; eq $? 2 "diff with --time three times"
# what --time refuses: a metric no window holds, a file without windows, a bad range
"$KILN" report $W/rg.kiln --time 0..1 --metric peak_bytes >/dev/null 2>$W/err; eq $? 2 "--time with peak_bytes"
grep -q "^kiln report: --time shows what a stretch of time holds" $W/err || fail "--time peak_bytes: $(head -1 $W/err)"
"$KILN" report $W/rg.kiln --time 2..1 >/dev/null 2>$W/err; eq $? 2 "--time 2..1"
"$KILN" report $W/rg.kiln --time 1 >/dev/null 2>$W/err; eq $? 2 "--time 1"
"$(dirname "$KILN")/gen_profile" $W/gen.kiln 10 || fail "generate a profile"
"$KILN" report $W/gen.kiln --time 0..1 >/dev/null 2>$W/err; eq $? 1 "--time on a file without windows"
grep -q "no time windows" $W/err || fail "--time without windows: $(head -1 $W/err)"
ok "--time: rss_grow cut at $edge s: grow_a 32 MiB before (live at the cut), grow_b 48 MiB after, halves add up; bad uses refused"
