#!/bin/bash
# The program sees the environment it was given: kiln's variables are gone
# before main (env_count copies its environment as git and python do), and
# still every child is followed, whichever way it was started (system,
# popen, posix_spawn, posix_spawnp, fork+execl, execle with an environment
# of its own, execvp): each child's leak is counted; with --no-follow none is.
source "$(dirname "$0")/lib.sh"
a=$(env -i A=1 B=22 $TARGETS/env_count)
b=$(env -i A=1 B=22 "$KILN" record -q --heap -o $W/e.kiln -- $TARGETS/env_count) || fail "record env_count"
eq "$b" "$a" "env_count's environment under kiln --heap"
b=$(env -i A=1 B=22 LD_PRELOAD= "$KILN" record -q -o $W/c.kiln -- $TARGETS/env_count) || fail "record env_count (CPU)"
eq "$b" "$(env -i A=1 B=22 LD_PRELOAD= $TARGETS/env_count)" "env_count's environment under kiln (CPU only)"
# the program's own allocations only: its copies of 2 variables, the array, stdout's buffer
eq $(weight $(folded $W/e.kiln alloc_count) '^main$') 4 "env_count's allocations in main"
ok "env_count: '$a' with and without kiln, 4 allocations in main"

env -i A=1 B=22 PATH=/usr/bin:/bin $TARGETS/env_spawn >$W/bare || fail "env_spawn bare"
env -i A=1 B=22 PATH=/usr/bin:/bin "$KILN" record -q --heap -o $W/s.kiln -- $TARGETS/env_spawn >$W/under || fail "record env_spawn"
diff $W/bare $W/under >&2 || fail "env_spawn's processes see another environment under kiln"
eq $(wc -l <$W/under) 8 "env_spawn's lines"
F=$(folded $W/s.kiln leak_bytes)
eq $(weight $F '^child_leak$') 28000 "child_leak in all seven children"
eq $(grep -c 'child_leak' $F) 7 "children with a leak"
ok "env_spawn: 7 children followed (system, popen, posix_spawn[p], execl, execle, execvp), environments unchanged"

env -i A=1 B=22 PATH=/usr/bin:/bin "$KILN" record -q --heap --no-follow -o $W/n.kiln -- $TARGETS/env_spawn >$W/nf || fail "record --no-follow"
diff $W/bare $W/nf >&2 || fail "environment under --no-follow"
F=$(folded $W/n.kiln leak_bytes)
eq $(weight $F '^child_leak$') 0 "child_leak with --no-follow"
ok "--no-follow: no child followed, environments unchanged"

# an empty C++ program: libstdc++'s one allocation, none of what glibc
# allocates inside the shim's own symbol lookups
run_to 30 "$KILN" record -q --heap -o $W/cxx.kiln -- $TARGETS/empty_iostream || fail "record empty_iostream"
n=$(total $(folded $W/cxx.kiln alloc_count))
if command -v valgrind >/dev/null; then
  v=$(valgrind $TARGETS/empty_iostream 2>&1 | sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' | tr -d ,)
  eq $n "$v" "allocations of an empty C++ program (valgrind: $v)"
else
  eq $n 1 "allocations of an empty C++ program"
fi
grep -q 'resolve_real\|dlsym' <("$KILN" export $W/cxx.kiln --format folded --metric alloc_count) && fail "kiln's own symbol lookup recorded as the program's"
ok "empty C++ program: $n allocation, as valgrind counts"
