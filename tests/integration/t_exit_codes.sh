#!/bin/bash
# kiln record passes on the program's status: its exit code, 128+N for a
# signal, 126 / 127 when it cannot run; no profile is left behind then.
source "$(dirname "$0")/lib.sh"
"$KILN" record -q -o $W/a.kiln -- sh -c 'exit 7'; eq $? 7 "exit 7"
"$KILN" record -q -o $W/b.kiln -- sh -c 'kill -SEGV $$'; eq $? 139 "SIGSEGV"
"$KILN" record -q -o $W/c.kiln -- sh -c 'kill -KILL $$'; eq $? 137 "SIGKILL"
"$KILN" record -q -o $W/d.kiln -- /nonexistent/prog 2>$W/e; eq $? 127 "missing program"
grep -q 'No such file' $W/e || fail "message for a missing program"
[ ! -e $W/d.kiln ] || fail "a profile was left for a program that never ran"
echo data >$W/notexec; chmod 644 $W/notexec
"$KILN" record -q -o $W/e.kiln -- $W/notexec 2>/dev/null; eq $? 126 "not executable"
"$KILN" record -q -o $W/f.kiln -- true; eq $? 0 "true"
"$KILN" report $W/f.kiln >/dev/null || fail "report of a run with no samples"
"$KILN" record -q -o /nonexistent-dir/x.kiln -- true 2>$W/e; eq $? 125 "unwritable output"
[ "$(wc -l <$W/e)" -eq 1 ] || fail "one line for an unwritable output: $(cat $W/e)"
ok "exit codes"
