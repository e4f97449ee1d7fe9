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
