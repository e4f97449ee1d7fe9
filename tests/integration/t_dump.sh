#!/bin/bash
# kiln dump PID: every thread of a running process, now, with its state and
# stack; the process unharmed (not left stopped, goes on as before).
#   a C program blocked in read() (cat on a FIFO): its read frame, state
#     "sleeping in read()", and it still copies what comes after;
#   py_async.py dump (every CPython found, first of each X.Y): the thread
#     blocked on a queue shows blocked_reader with py_async.py:LINE; --native
#     adds native frames; --json parses;
#   a missing pid, a zombie, no pid: one line, exit 1 / 1 / 2.
source "$(dirname "$0")/lib.sh"
T=$SRC/tests/targets
stopped() { grep -q 'State:.*[tT]' /proc/$1/status 2>/dev/null; }

mkfifo $W/fifo
cat $W/fifo >$W/cat.out & CP=$!
exec 3>$W/fifo
sleep 0.3
run_to 20 "$KILN" dump $CP >$W/c.dump 2>$W/c.err || fail "dump of cat: exit $? ($(cat $W/c.err))"
grep -q "^Thread $CP \"cat\" (sleeping in read())" $W/c.dump || fail "cat's state: $(grep ^Thread $W/c.dump)"
grep -A1 '^Thread' $W/c.dump | grep -qE '^    (__libc_read|read|__read|__GI___libc_read) ' || fail "cat's innermost frame is not read: $(head -5 $W/c.dump)"
grep -qE '^    __libc_start_main' $W/c.dump || fail "cat's stack does not reach __libc_start_main: $(cat $W/c.dump)"
grep -qE '^# kiln dump of pid [0-9]+ .*: 1 thread; each was stopped [0-9.]+ us' $W/c.dump || fail "dump header: $(head -1 $W/c.dump)"
stopped $CP && fail "cat left stopped after the dump"
echo hello >&3; exec 3>&-
wait $CP; eq $? 0 "cat's status after the dump"
grep -q hello $W/cat.out || fail "cat did not copy what came after the dump"
ok "a C program blocked in read(): its state and frames, then it went on"

"$KILN" dump 999999999 2>$W/e; eq $? 1 "dump of a missing pid"
[ "$(wc -l <$W/e)" = 1 ] && grep -q 'no process' $W/e || fail "missing pid: $(cat $W/e)"
"$KILN" dump 2>$W/e; eq $? 2 "dump without a pid"
"$KILN" dump abc 2>$W/e; eq $? 2 "dump of abc"
sh -c "sleep 0 & echo \$! >$W/zpid; exec sleep 2" & ZP=$!
sleep 0.3
"$KILN" dump $(cat $W/zpid) 2>$W/e; eq $? 1 "dump of a zombie"
grep -q zombie $W/e && [ "$(wc -l <$W/e)" = 1 ] || fail "zombie: $(cat $W/e)"
kill $ZP 2>/dev/null; wait $ZP 2>/dev/null
ok "a missing pid, no pid, a zombie: one line, exit 1, 2, 1"

# a process another tracer holds: said as kiln dump's, naming the tracer
sleep 5 & SP=$!
"$KILN" record -q --wall -p $SP -d 3 -o $W/t1.kiln 2>/dev/null & KP=$!
for i in $(seq 40); do [ "$(awk '/^TracerPid/{print $2}' /proc/$SP/status)" != 0 ] && break; sleep 0.05; done
run_to 20 "$KILN" dump $SP >/dev/null 2>$W/e; eq $? 1 "dump of a traced process"
[ "$(wc -l <$W/e)" = 1 ] && grep -q "^kiln dump: cannot attach to pid $SP: it is already traced by pid $KP (kiln)" $W/e \
  || fail "dump of a traced process: $(cat $W/e)"
kill -INT $KP; wait $KP; kill $SP; wait $SP 2>/dev/null
ok "a traced process: $(cat $W/e)"

line=$(grep -n 'q.get(timeout=30)' $T/py_async.py | cut -d: -f1)
find_pythons 3.10 3.11 3.12 3.13
for PY in "${pys[@]}"; do
  first_of_minor "$PY" || { skip "$PY: the same X.Y as one dumped already"; continue; }
  v=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  tag="python $v ($PY)"
  : >$W/pa.out
  "$PY" $T/py_async.py dump >$W/pa.out 2>&1 & PP=$!
  # its asyncio part (0.8 s of CPU among others) comes first
  await_out $W/pa.out ready $PP "$tag: py_async.py dump"
  sleep 0.2
  run_to 20 "$KILN" dump $PP >$W/p.dump 2>$W/p.err || fail "$tag: dump: exit $? ($(cat $W/p.err))"
  grep -qE "^    blocked_reader \(.*py_async.py:$line\)$" $W/p.dump || fail "$tag: no blocked_reader at py_async.py:$line: $(cat $W/p.dump)"
  grep -qE '^    <module> ' $W/p.dump || fail "$tag: no <module> frame under it: $(cat $W/p.dump)"
  grep -q '_PyEval_EvalFrameDefault\|PyEval' $W/p.dump && fail "$tag: native frames without --native"
  run_to 20 "$KILN" dump $PP --native >$W/pn.dump 2>$W/pn.err || fail "$tag: dump --native: $(cat $W/pn.err)"
  grep -q 'blocked_reader' $W/pn.dump && grep -q 'main\b\|Py_' $W/pn.dump || fail "$tag: --native lacks Python or native frames: $(head -20 $W/pn.dump)"
  run_to 20 "$KILN" dump $PP --json >$W/pj.json 2>$W/pj.err || fail "$tag: dump --json: $(cat $W/pj.err)"
  python3 - $W/pj.json $PP <<'PY' || fail "$tag: --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["pid"] == int(sys.argv[2]) and d["python"] is True, d
assert d["threads"] and d["threads"][0]["tid"] == d["pid"], d["threads"]
names = [f["name"] for f in d["threads"][0]["frames"]]
assert "blocked_reader" in names, names
PY
  kill -0 $PP 2>/dev/null || fail "$tag: py_async.py died after the dumps"
  stopped $PP && fail "$tag: py_async.py left stopped"
  kill $PP; wait $PP 2>/dev/null
  ok "$tag: blocked_reader (py_async.py:$line) and <module>; --native, --json; the process unharmed"
  # one thread holding the GIL in a long C call, one waiting for it
  : >$W/g.out  # emptied first: the last Python's "ready" is there (await_out)
  "$PY" $T/py_gil_wait.py >$W/g.out 2>&1 & GP=$!
  await_out $W/g.out ready $GP "$tag: py_gil_wait.py"
  sleep 0.2
  run_to 20 "$KILN" dump $GP >$W/g.dump 2>$W/g.err || fail "$tag: dump of py_gil_wait: $(cat $W/g.err)"
  grep -q "^Thread $GP .*(running)" $W/g.dump || fail "$tag: the GIL holder is not running: $(grep ^Thread $W/g.dump)"
  grep -A1 '(waiting for the GIL)$' $W/g.dump | grep -q '^    waiter ' || fail "$tag: the waiter is not said to wait for the GIL: $(cat $W/g.dump)"
  kill $GP; wait $GP 2>/dev/null
  ok "$tag: a thread waiting for the GIL said so, the holder running"
done
