#!/bin/bash
# The SVG flamegraph in a real browser (headless Chromium, driven by
# playwright-core): hover, zoom, reset, search; and a 100,000-stack profile
# that stays under 5 MB and renders in under 2 s.
source "$(dirname "$0")/lib.sh"
B=$SRC/tests/browser
[ -x /usr/bin/chromium ] || fail "chromium is not installed (sudo bash scripts/setup.sh --deps)"
[ -d $B/node_modules/playwright-core ] || fail "playwright-core is not installed (npm ci --prefix tests/browser)"
run_to 60 "$KILN" record -q -o $W/cs.kiln -- $TARGETS/cpu_split 1 >/dev/null || fail record
"$KILN" flamegraph $W/cs.kiln -o $W/cs.svg || fail flamegraph
"$(dirname "$KILN")/gen_profile" $W/big.kiln 100000 || fail "generate a 100,000-stack profile"
s=$(date +%s%N); "$KILN" flamegraph $W/big.kiln -o $W/big.svg || fail "big flamegraph"; ms=$(( ($(date +%s%N) - s) / 1000000 ))
size=$(stat -c %s $W/big.svg); [ $size -lt 5000000 ] || fail "100,000-stack SVG is $size B"
ok "100,000 stacks: SVG of $size B written in $ms ms"
run_to 120 node $B/flamegraph.mjs $W/cs.svg ${SCREENSHOT:-$W/shot.png} $W/big.svg || fail "browser test"

# a stretch of time chosen on a heap flamegraph's chart: the frames drawn
# again hold what `kiln export --time` gives for the same stretch, exactly
run_to 60 "$KILN" record -q --heap -o $W/rg.kiln -- $TARGETS/rss_grow >/dev/null || fail "record rss_grow"
"$KILN" flamegraph $W/rg.kiln --metric alloc_bytes -o $W/rg.svg || fail "flamegraph of rss_grow"
"$KILN" export $W/rg.kiln --format timeline -o $W/rg.csv || fail "timeline of rss_grow"
# from just before grow_b's allocation (the heap reaches 48 MiB) to the end
tb=$(awk -F, 'NR > 1 && $3 >= 50331648 { print $1; exit }' $W/rg.csv)
[ -n "$tb" ] || fail "rss_grow's timeline never reaches 48 MiB"
# (dragged past the chart's right edge: the run's last window can be a
# fraction of a pixel wide, and it holds the leak stdio's buffer makes)
from=$(awk -v t=$tb 'BEGIN { printf "%.3f", t - 0.1 }')
run_to 120 node $B/time_select.mjs $W/rg.svg $from end >$W/sel.txt || fail "browser: choosing a stretch of time"
cat $W/sel.txt
read -r _ f0 f1 tot a b < <(grep '^in ' $W/sel.txt)
# the same stretch from the command line (its edges, given back a hair inside)
F=$(folded $W/rg.kiln alloc_bytes --time $(awk -v a=$f0 -v b=$f1 'BEGIN { printf "%.9f..%.9f", a + 1e-6, b - 1e-6 }'))
eq $tot $(total $F) "the browser's stretch, all of alloc_bytes, against kiln export --time"
eq $b $(weight $F '^grow_b$') "grow_b in the stretch (browser vs export --time)"
eq $b 50331648 "grow_b allocated 48 MiB in the stretch"
eq $a $(weight $F '^grow_a$') "grow_a in the stretch (browser vs export --time)"
read -r _ f0 f1 tot a b < <(grep '^live ' $W/sel.txt)
F=$(folded $W/rg.kiln live_bytes --time $(awk -v a=$f0 -v b=$f1 'BEGIN { printf "%.9f..%.9f", a + 1e-6, b - 1e-6 }'))
eq $tot $(total $F) "live at the stretch's end (browser vs export --time)"
eq $tot $(total $(folded $W/rg.kiln leak_bytes)) "live at the run's end is the leaks"
read -r _ n home < <(grep '^whole ' $W/sel.txt)
eq $n $home "frames after 'Whole run'"
ok "time selection in the browser: alloc_bytes $f0-$f1 s holds grow_b's 48 MiB, as export --time; live at the end = leaks; whole run back"
