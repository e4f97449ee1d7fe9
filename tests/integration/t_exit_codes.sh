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
# -d in launch mode: stop recording after SEC, leave the program running
"$KILN" record -q --heap -d 0.5 -o $W/d.kiln -- $TARGETS/cpu_split 4 >$W/cs.out; rc=$?
eq $rc 0 "-d in launch mode"
# kiln returned while the program (4 CPU seconds) still runs, however busy the host
CP=$(pgrep -f "$TARGETS/cpu_split 4" | head -1)
[ -n "$CP" ] || fail "-d 0.5 waited for the program, or it did not run on"
grep -q 'cpu_split done' $W/cs.out && fail "-d 0.5 returned only after the program ended"
cs=$(cpu_s $CP)
n=$("$KILN" export $W/d.kiln --format folded | awk '{s+=$NF} END {print s+0}')
[ "$n" -ge 100 ] || fail "-d 0.5 kept $n samples (the program has had $cs CPU s)"
for i in $(seq 300); do kill -0 $CP 2>/dev/null || break; sleep 0.1; done
grep -q 'cpu_split done' $W/cs.out || fail "the detached program did not finish"
ok "-d detaches from a launched program ($n samples, ran on)"
