#!/bin/bash
# The CLI contract: help, version, usage errors exit 2 with a hint, errors
# exit 1 with one line naming the file, absurd options refused fast.
source "$(dirname "$0")/lib.sh"
"$KILN" --help | grep -q 'record' || fail "--help"
"$KILN" --version | grep -qE '^kiln [0-9]+\.[0-9]+' || fail "--version"
for c in record report export flamegraph diff snapshot dump top; do
  "$KILN" $c --help >$W/h || fail "$c --help exits $?"
  grep -q "usage: kiln $c" $W/h || fail "$c --help text"
done
"$KILN" no-such 2>/dev/null; eq $? 2 "unknown command"
"$KILN" 2>/dev/null; eq $? 2 "no command"
"$KILN" report 2>$W/e; eq $? 2 "report without file"
grep -q -- "--help" $W/e || fail "usage hint"
for args in "record -F 0 -- true" "record -F 1e9 -- true" "record -F abc -- true" "record -p -1" "record -p 0" \
    "record" "record -d -3 -- true" "report x --limit -3" "report x --metric nope" "report x --by nope" \
    "report x --sort up" "export x --format nope" "export x" "diff a" "snapshot" "snapshot abc" \
    "record --no-cpu -- true" "record --bogus -- true" "top" "top abc" "top 1 -d 0" "top 1 --sort up"; do
  s=$(date +%s%N)
  "$KILN" $args >/dev/null 2>$W/e; rc=$?
  ms=$(( ($(date +%s%N) - s) / 1000000 ))
  [ $rc -eq 2 ] || fail "'kiln $args' exits $rc, not 2"
  [ -s $W/e ] || fail "'kiln $args' says nothing"
  [ $ms -lt 1000 ] || fail "'kiln $args' took $ms ms (a refusal does no work)"
done
ok "usage errors"
"$KILN" report $W/missing 2>$W/e; eq $? 1 "missing file"
grep -q "$W/missing" $W/e || fail "error names the file"
[ "$(wc -l <$W/e)" -eq 1 ] || fail "one line"
"$KILN" record -p 999999999 -o $W/p.kiln 2>$W/e; rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "attach to a missing pid exits $rc"
grep -q 'no process' $W/e || fail "missing pid message: $(cat $W/e)"
"$KILN" snapshot 999999999 2>/dev/null; eq $? 1 "snapshot of a missing pid"
"$KILN" snapshot $$ 2>$W/e; eq $? 1 "snapshot of a pid not under kiln"
grep -q 'not running under' $W/e || fail "snapshot refusal: $(cat $W/e)"
ok "errors"
# a zombie: one line naming the cause, fast, below 128
sh -c "sleep 0 & echo \$! >$W/zpid; exec sleep 3" & ZP=$!
sleep 0.3
Z=$(cat $W/zpid)
[ "$(awk '/^State/{print $2}' /proc/$Z/status 2>/dev/null)" = Z ] || fail "could not make a zombie"
s=$(date +%s%N)
"$KILN" record -p $Z -d 1 -o $W/z.kiln 2>$W/e; rc=$?
ms=$(( ($(date +%s%N) - s) / 1000000 ))
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "attach to a zombie exits $rc"
grep -q 'zombie' $W/e && [ "$(wc -l <$W/e)" -eq 1 ] || fail "zombie message: $(cat $W/e)"
[ $ms -lt 900 ] || fail "zombie refusal took $ms ms (it did not wait out -d 1)"
[ ! -e $W/z.kiln ] || fail "a profile was left for a zombie"
kill $ZP 2>/dev/null; wait $ZP 2>/dev/null
ok "zombie pid refused"

# hardening of what runs as root: PIE, full RELRO, stack protector, fortified
# (the optimized builds; the ASan build is -O0, where _FORTIFY_SOURCE cannot be)
readelf -h "$KILN" | grep -q 'DYN (Position-Independent' || fail "kiln is not PIE"
readelf -d "$KILN" | grep -q 'BIND_NOW' && readelf -lW "$KILN" | grep -q GNU_RELRO || fail "kiln lacks full RELRO"
nm -D "$KILN" | grep -q __stack_chk_fail || fail "kiln built without a stack protector"
if nm -D "$KILN" | grep -q __asan_init; then
  skip "_FORTIFY_SOURCE check (sanitizer build)"
else
  nm -D "$KILN" | grep -q '__[a-z]*_chk@' || fail "kiln is not built with _FORTIFY_SOURCE"
  ok "hardened: PIE, full RELRO, stack protector, _FORTIFY_SOURCE"
fi
