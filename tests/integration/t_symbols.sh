#!/bin/bash
# Symbols: a dlopen'ed-then-dlclose'd library is named; a recursive function
# is counted once per stack; an always_inline function is a frame of its own
# with its file:line; the profile reports after the binary is deleted.
source "$(dirname "$0")/lib.sh"
run_to 60 "$KILN" record -q -o $W/dl.kiln -- $TARGETS/dl_main $TARGETS/libdl_lib.so >/dev/null || fail "record dl_main"
"$KILN" report $W/dl.kiln --limit 0 >$W/rep || fail "report"
grep -q 'dl_spin' $W/rep || fail "dl_spin not named: $(cat $W/rep)"
# shares of the two spins (0.6 s and 0.3 s of CPU): what else the process
# ran (its start, the dlopen; before exec, a sanitized kiln's child) is not
# part of the known answer
# (samples the kernel lost while the recorder was busy are counted in the
# profile: the bar widens by what they could have moved, never silently)
F=$(folded $W/dl.kiln cpu); a=$(weight $F '^dl_spin$'); b=$(weight $F '^after_close$')
[ $((a + b)) -gt 300 ] || fail "only $((a + b)) samples under dl_spin and after_close"
lost=$("$KILN" report $W/dl.kiln --json | python3 -c "import json,sys; print(json.load(sys.stdin)['lost'])")
tol=$(awk -v a=$a -v b=$b -v l=$lost 'BEGIN { printf "%.1f", 2 + 100 * l / (a + b + l) }')
s=$(awk -v a=$a -v b=$b 'BEGIN { printf "%.1f", 100 * a / (a + b) }'); within $s 66.7 $tol || fail "dl_spin $s% of the two ($lost samples lost)"
s2=$(awk -v a=$a -v b=$b 'BEGIN { printf "%.1f", 100 * b / (a + b) }'); within $s2 33.3 $tol || fail "after_close $s2% of the two ($lost samples lost)"
"$KILN" report $W/dl.kiln --by lib --limit 0 | grep -q 'libdl_lib.so' || fail "--by lib names the library"
ok "dlopen/dlclose: dl_spin $s% named"

run_to 60 "$KILN" record -q -o $W/rec.kiln -- $TARGETS/recursion 1 || fail "record recursion"
"$KILN" report $W/rec.kiln --json --limit 0 >$W/rec.json || fail "report"
F=$(folded $W/rec.kiln cpu)
python3 - $W/rec.json $(weight $F '^recurse$') <<'PY' || fail "recursion counted more than once"
import json, sys
d = json.load(open(sys.argv[1])); rows = {r["name"]: r for r in d["rows"]}
# its total is the weight of the stacks it is in, once each, not 13 times
assert rows["recurse"]["total"] == int(sys.argv[2]), (rows["recurse"], sys.argv[2])
assert rows["recurse"]["total"] >= 0.95 * d["total"] and rows["recurse"]["total_pct"] <= 100.0
PY
grep -qE '(recurse;){12}recurse' $F || fail "13 recurse frames in the stack"
ok "recursion counted once"

run_to 60 "$KILN" record -q -o $W/inl.kiln -- $TARGETS/inlined 1 || fail "record inlined"
F=$(folded $W/inl.kiln cpu); s=$(share $F '^hot_inline$'); within $s 99.5 1.5 || fail "hot_inline frame $s%"
grep -q ';outer_fn;hot_inline' $F || fail "hot_inline under outer_fn"
line=$(grep -n HOT_INLINE_LINE $SRC/tests/targets/inlined.c | cut -d: -f1)
"$KILN" report $W/inl.kiln --by line --limit 0 | grep -q "hot_inline (.*inlined.c:$line)" || fail "hot_inline at inlined.c:$line"
ok "always_inline frame with file:line"

# self-contained: copy the binary, profile the copy, delete it
cp $TARGETS/cpu_split $W/gone
run_to 60 "$KILN" record -q -o $W/gone.kiln -- $W/gone 0.5 >/dev/null || fail "record copy"
rm -f $W/gone
F=$(folded $W/gone.kiln cpu); s=$(share $F '^frame_a$'); within $s 60 3 || fail "after deleting the binary: frame_a $s%"
"$KILN" report $W/gone.kiln --by line | grep -q 'cpu_split.c' || fail "file:line after deleting the binary"
ok "reports after the binary is deleted"

# deep recursion: stacks end in a marker, no crash, no slowdown
s0=$(date +%s%N)
run_to 60 "$KILN" record -q -o $W/deep.kiln -- $TARGETS/deep 20000 0.5 || fail "record deep"
ms=$(( ($(date +%s%N) - s0) / 1000000 )); [ $ms -lt 5000 ] || fail "deep recursion took $ms ms"
F=$(folded $W/deep.kiln cpu); s=$(share $F '^\[truncated\]$'); within $s 100 2 || fail "deep stacks marked truncated: $s%"
grep -q '^\[truncated\];dive;dive' $F || fail "marker at the root of a deep stack"
ok "deep recursion marked [truncated] ($ms ms)"

# JIT code named from /tmp/perf-PID.map; below it its real caller (libunwind's
# frame-chain fallback) or a marker, never a wrong frame
run_to 60 "$KILN" record -q -o $W/jit.kiln -- $TARGETS/jit 1 || fail "record jit"
# (a sample read late, once the JIT's memory is gone, is named from the perf
# map in [unmapped]: then the two are told apart by module)
F=$(folded $W/jit.kiln cpu); s=$(share $F '^jit_hot_loop( \(\[(anon|unmapped)\]\))?$'); within $s 100 2 || fail "jit_hot_loop $s%: $(head -3 $F)"
grep -qE '(^\[truncated\]|;main);jit_hot_loop( \(\[(anon|unmapped)\]\))? [0-9]+$' $F || fail "below a JIT frame: its real caller or a marker: $(head -3 $F)"
rm -f /tmp/perf-$(pgrep -n jit 2>/dev/null || echo none).map
ok "JIT code named from perf-PID.map ($s%)"

# every inlined level a frame of its own: a 3-level chain of static inlines
run_to 30 "$KILN" record -q -o $W/i3.kiln -- $TARGETS/inline3 0.5 >/dev/null || fail "record inline3"
F=$(folded $W/i3.kiln cpu)
w=$(awk '/;main;level1;level2;level3;leaf( |;)/ { s+=$NF } END { print s+0 }' $F); t=$(total $F)
[ $((w * 100)) -ge $((t * 90)) ] || fail "nested inlines: only $w of $t samples under main;level1;level2;level3;leaf: $(sort -k2 -n $F | tail -1)"
"$KILN" report $W/i3.kiln --by line --limit 0 >$W/i3.rep
for want in 'level1 (.*inline3.c:16)' 'level2 (.*inline3.c:15)' 'level3 (.*inline3.c:14)' 'main (.*inline3.c:17)'; do
  grep -q "$want" $W/i3.rep || fail "nested inlines: no '$want' in --by line: $(grep -E 'level|main' $W/i3.rep)"
done
ok "nested inlines: main;level1;level2;level3;leaf with each call's line"

# PLT stubs named NAME@plt, as perf names them (never the _init before them)
run_to 60 "$KILN" record -q -o $W/plt.kiln -- $TARGETS/plt_loop >/dev/null || fail "record plt_loop"
F=$(folded $W/plt.kiln cpu)
[ $(weight $F '^(memcpy|abs)@plt$') -gt 0 ] || fail "no samples in memcpy@plt/abs@plt: $(grep -o '[^;]*@plt[^;]*' $F | sort -u | head -3)"
[ $(weight $F '^_init$') = 0 ] || fail "PLT stubs named _init"
ok "PLT stubs: memcpy@plt, abs@plt"

# a separate debug file: by .gnu_debuglink beside the binary (kiln's own
# folder, so trusted) gives file:line; the same link with a wrong CRC gives
# none (the symbols stay)
mkdir -p $W/sep; cp $TARGETS/cpu_split $W/sep/prog; objcopy --only-keep-debug $W/sep/prog $W/sep/prog.debug
strip --strip-debug $W/sep/prog && objcopy --add-gnu-debuglink=$W/sep/prog.debug $W/sep/prog || fail "objcopy"
run_to 60 "$KILN" record -q -o $W/sep.kiln -- $W/sep/prog 0.5 >/dev/null || fail "record a stripped binary"
"$KILN" report $W/sep.kiln --limit 0 >$W/sep.rep
grep -qE ' frame_a  \[cpu_split\.c:[0-9]+\]$' $W/sep.rep || fail "debuglink: no file:line for frame_a: $(grep frame_a $W/sep.rep)"
echo "changed" >>$W/sep/prog.debug
run_to 60 "$KILN" record -q -o $W/sep2.kiln -- $W/sep/prog 0.3 >/dev/null || fail "record with a stale debug file"
"$KILN" report $W/sep2.kiln --limit 0 >$W/sep2.rep
grep -qE ' frame_a  \[prog\]$' $W/sep2.rep || fail "a debug file whose CRC differs was read: $(grep frame_a $W/sep2.rep)"
ok "separate debug file by debuglink: file:line; a CRC that differs: not read, names kept"
