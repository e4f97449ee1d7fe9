#!/bin/bash
# Attach to a running process: the 2:1 split of a busy thread, the sleeping
# thread absent from on-CPU samples and half of wall-clock samples, the
# server serving afterwards, threads coming and going, kiln killed mid-run;
# waits without end (epoll_wait -1, sigwaitinfo) never ended by kiln's stops.
source "$(dirname "$0")/lib.sh"
mkfifo $W/in
$TARGETS/server <$W/in >$W/out & SP=$!
exec 7>$W/in
trap 'kill $SP 2>/dev/null; cleanup' EXIT
for i in $(seq 50); do grep -q ready $W/out 2>/dev/null && break; sleep 0.05; done
tstate() { awk '/^State/{print $2}' /proc/$1/status; }
anystopped() { for t in /proc/$1/task/*; do case $(awk '/^State/{print $2}' $t/status 2>/dev/null) in t|T) return 0;; esac; done; return 1; }

c0=$(cpu_s $SP)
run_to 30 "$KILN" record -p $SP -d 2 -o $W/a.kiln 2>$W/e; eq $? 0 "attach exit"
c1=$(cpu_s $SP); cs=$(awk -v a=$c0 -v b=$c1 'BEGIN { print b - a }')
F=$(folded $W/a.kiln cpu --threads)
n=$(total $F); lost=$("$KILN" report $W/a.kiln --json | python3 -c "import json,sys; print(json.load(sys.stdin)['lost'])")
# what was sampled or counted as lost (a busy host can starve the recorder;
# a loss is said, never hidden): against the CPU time the server had
at_least $((n + lost)) 0.7 $cs 999 || fail "$n on-CPU samples (+$lost lost) for $cs CPU seconds at 999 Hz"
a=$(share $F '^work_two$'); b=$(share $F '^work_one$')
within $a 66.7 6 && within $b 33.3 6 || fail "split $a/$b, want 66.7/33.3"
eq $(weight $F '^wait_for_request$') 0 "sleeping thread's on-CPU samples"
! grep -q 'profile is thin' $W/e || fail "a whole attach said thin: $(cat $W/e)"
ok "attached 2 s: $n samples for $cs CPU s, split $a/$b, sleeper 0"
# samples the kernel does not deliver (KILN_TEST_DROP_SAMPLES=1: every one
# ignored, as a kernel that throttles or drops them): said, not left for
# the reader to notice in a thin profile
KILN_TEST_DROP_SAMPLES=1 run_to 30 "$KILN" record -p $SP -d 1 -o $W/d.kiln 2>$W/e; eq $? 0 "attach (samples dropped) exit"
grep -qE "^kiln record: warning: pid $SP had [0-9.]+ s of CPU while attached, but only 0 samples came of the [0-9]+ the kernel takes at 999 Hz" $W/e \
  || fail "samples missing not said: $(cat $W/e)"
"$KILN" report $W/d.kiln | grep -q '^# samples: the process had [0-9.]* s of CPU while attached, but only 0 samples came .* THIN' \
  || fail "the report does not say the profile is thin: $("$KILN" report $W/d.kiln | head -4)"
ok "samples missing against the CPU time: said at the end and in the report ($(grep -o 'only 0 samples came of the [0-9]*' $W/e))"
echo ping >&7
for i in $(seq 50); do grep -q 'pong 1' $W/out && break; sleep 0.05; done
grep -q 'pong 1' $W/out || fail "the server does not serve after detach"
anystopped $SP && fail "server left stopped"
[ "$(awk '/^TracerPid/{print $2}' /proc/$SP/status)" = 0 ] || fail "server left traced"
ok "server serves after detach"

run_to 30 "$KILN" record --wall -p $SP -d 2 -o $W/w.kiln 2>$W/e; eq $? 0 "attach --wall exit"
F=$(folded $W/w.kiln wall)
s=$(share $F '^wait_for_request$'); within $s 50 8 || fail "sleeping thread holds $s% of wall samples"
grep -q 'wait_for_request;__GI___poll\|wait_for_request;poll\|wait_for_request;__poll' $F || fail "sleeping stack: $(grep wait_for $F | head -1)"
b=$(share $F '^busy_thread$'); within $b 50 8 || fail "busy thread $b% of wall samples"
echo ping >&7
for i in $(seq 50); do grep -q 'pong 2' $W/out && break; sleep 0.05; done
grep -q 'pong 2' $W/out || fail "the server does not serve after --wall"
ok "--wall: sleeper $s% in poll, busy $b%"

# stopped (SIGSTOP, as ^Z) during a --wall recording: its threads are
# sampled where they stopped, the stop is theirs to keep (still stopped
# after kiln leaves, no tracer), and SIGCONT brings the server back
wt=$(total $F)
run_to 30 "$KILN" record --wall -p $SP -d 2 -o $W/ws.kiln 2>$W/e & KP=$!
sleep 0.5; kill -STOP $SP; sleep 0.8
S=$(grep -E '^State' /proc/$SP/status | awk '{print $2}')
wait $KP; eq $? 0 "attach --wall across a stop: exit"
anystopped $SP || fail "the server was continued by kiln (state $S during, $(awk '/^State/{print $2}' /proc/$SP/status) after)"
[ "$(awk '/^TracerPid/{print $2}' /proc/$SP/status)" = 0 ] || fail "stopped server left traced"
F=$(folded $W/ws.kiln wall); n=$(total $F)
# the ticks weigh the time that passed: the stop does not thin them out
awk -v n=$n -v w=$wt 'BEGIN { exit !(n >= 0.85 * w && n <= 1.15 * w) }' || fail "wall samples across a stop: $n, $wt without one"
run_to 20 "$KILN" dump $SP >$W/dump 2>&1 || fail "dump of a stopped server: $(tail -1 $W/dump)"
grep -q 'wait_for_request' $W/dump && ! grep -q 'not caught' $W/dump || fail "dump of a stopped server: $(cat $W/dump)"
anystopped $SP || fail "the server was continued by kiln dump"
kill -CONT $SP
echo ping >&7
for i in $(seq 50); do grep -q 'pong 3' $W/out && break; sleep 0.05; done
grep -q 'pong 3' $W/out || fail "the server does not serve after SIGCONT"
ok "--wall across SIGSTOP: $n wall samples ($wt without a stop), stays stopped, untraced; dump shows its stacks; SIGCONT serves"

# a process another tracer holds (here a first kiln --wall): one line that
# names the tracer, for sampling and for heap attach alike
"$KILN" record -q --wall -p $SP -d 3 -o $W/t1.kiln 2>/dev/null & KP=$!
for i in $(seq 40); do [ "$(awk '/^TracerPid/{print $2}' /proc/$SP/status)" != 0 ] && break; sleep 0.05; done
for m in --wall --heap; do
  run_to 30 "$KILN" record -q $m -p $SP -d 0.3 -o $W/t2.kiln 2>$W/e; rc=$?
  eq $rc 1 "a second tracer ($m): exit status"
  [ "$(wc -l <$W/e)" = 1 ] && grep -q "cannot attach to pid $SP: it is already traced by pid $KP (kiln); one tracer at a time" $W/e \
    || fail "a second tracer ($m): $(cat $W/e)"
done
wait $KP; eq $? 0 "the first tracer's recording"
ok "a process already traced: $(cat $W/e)"

# kill -9 of kiln mid-attach, 20 times (10 perf, 10 ptrace): never left stopped
for i in $(seq 20); do
  mode=; [ $((i % 2)) = 0 ] && mode=--wall
  "$KILN" record -q $mode -F 999 -p $SP -o $W/k.kiln 2>/dev/null & KP=$!
  sleep 0.$((RANDOM % 4 + 1)); kill -9 $KP; wait $KP 2>/dev/null
  sleep 0.1
  anystopped $SP && fail "target stopped after kill -9 of kiln ($mode, round $i)"
done
echo ping >&7
for i in $(seq 50); do grep -q 'pong 4' $W/out && break; sleep 0.05; done
grep -q 'pong 4' $W/out || fail "the server does not serve after 20 kills"
"$KILN" report $W/k.kiln >/dev/null 2>&1; rc=$?; [ $rc -le 1 ] || fail "report of a killed attach exits $rc"
ok "20 x kill -9 mid-attach: never stopped"
exec 7>&-
wait $SP 2>/dev/null

# threads created and ended at a high rate while attached
$TARGETS/thread_churn 4 & CP=$!
sleep 0.3
run_to 30 "$KILN" record -p $CP -d 2 -o $W/c.kiln 2>$W/e; eq $? 0 "attach to thread_churn (cpu): $(cat $W/e)"
run_to 30 "$KILN" record --wall -p $CP -d 1 -o $W/cw.kiln 2>$W/e; eq $? 0 "attach to thread_churn (wall): $(cat $W/e)"
anystopped $CP && fail "thread_churn left stopped"
wait $CP; eq $? 0 "thread_churn's own exit"
# (threads this short are seldom sampled, by perf record -p too: the
# assertion is that nothing breaks, and the profile is whole)
n=$(total $(folded $W/c.kiln cpu))
"$KILN" report $W/c.kiln >/dev/null 2>$W/e || fail "report of the thread_churn attach"
[ ! -s $W/e ] || fail "thread_churn profile incomplete: $(cat $W/e)"
ok "thread churn: $n samples, target unharmed"

# attach until the target exits on its own
$TARGETS/cpu_split 1 >/dev/null & CP=$!
run_to 30 "$KILN" record -p $CP -o $W/x.kiln 2>$W/e; eq $? 0 "attach until exit"
F=$(folded $W/x.kiln cpu); s=$(share $F '^frame_a$'); within $s 60 8 || fail "attach until exit: frame_a $s%"
ok "attach until the target exits"
# Ctrl-C (SIGINT) to kiln ends an attach with a complete profile
$TARGETS/cpu_split 3 >/dev/null & CP=$!
"$KILN" record -q -p $CP -o $W/i.kiln & KP=$!
sleep 1; kill -INT $KP; wait $KP; eq $? 0 "SIGINT to an attached kiln"
"$KILN" report $W/i.kiln 2>$W/e >/dev/null || fail "report after SIGINT"
[ ! -s $W/e ] || fail "profile after SIGINT is incomplete: $(cat $W/e)"
kill -0 $CP 2>/dev/null || fail "the target died with kiln's SIGINT"
wait $CP
ok "SIGINT ends the attach cleanly, target runs on"

# --wall in launch mode: a sleeping program is sampled where it sleeps
run_to 30 "$KILN" record -q --wall -o $W/sl.kiln -- sleep 1 || fail "record --wall sleep"
F=$(folded $W/sl.kiln wall); n=$(total $F)
[ "$n" -ge 60 ] && [ "$n" -le 110 ] || fail "--wall: $n samples of sleep 1 at 99 Hz (a busy host may delay ticks, never add them)"
s=$(share $F 'nanosleep'); within $s 100 5 || fail "--wall: $s% in nanosleep: $(head -2 $F)"
eq $(total $(folded $W/sl.kiln cpu 2>/dev/null || echo /dev/null)) 0 "--wall records wall, not cpu"
ok "--wall launch: sleep 1 has $n samples, $s% in nanosleep"

# where perf_event_open is refused: on-CPU sampling by ptrace, with a notice
KILN_FORCE_PTRACE=1 run_to 30 "$KILN" record -o $W/pt.kiln -- $TARGETS/cpu_split 2 >/dev/null 2>$W/e || fail "ptrace fallback record"
grep -q 'perf_event_open refused.*sampling with ptrace instead' $W/e || fail "no notice: $(cat $W/e)"
F=$(folded $W/pt.kiln cpu); a=$(share $F '^frame_a$'); b=$(share $F '^frame_b$'); c=$(share $F '^frame_c$')
within $a 60 5 && within $b 30 5 && within $c 10 4 || fail "ptrace on-CPU split $a/$b/$c"
n=$(total $F); [ "$n" -ge 1000 ] || fail "ptrace on-CPU: $n samples in 2 s"
mkfifo $W/in2
$TARGETS/server <$W/in2 >$W/out2 2>/dev/null & SP2=$!
exec 8>$W/in2
sleep 0.3
KILN_FORCE_PTRACE=1 run_to 30 "$KILN" record -q -p $SP2 -d 1 -o $W/pt2.kiln 2>$W/e; eq $? 0 "ptrace fallback attach"
F=$(folded $W/pt2.kiln cpu); w=$(share $F '^wait_for_request$')
# the poll wakes each second, and ptrace may catch it running: at most a trace
awk -v w=$w 'BEGIN { exit !(w <= 1) }' || fail "ptrace on-CPU: the sleeping thread holds $w% of on-CPU samples"
s=$(share $F '^work_two$'); within $s 66.7 8 || fail "ptrace on-CPU attach: work_two $s%"
exec 8>&-; wait $SP2 2>/dev/null
ok "perf refused: ptrace on-CPU sampling ($a/$b/$c, $n samples; attach work_two $s%)"

# waits without end that any stop ends with EINTR (epoll_wait with timeout
# -1, sigwaitinfo: signal(7)): kiln's stops for --wall samples, kiln dump
# and a heap attach leave them waiting, as without kiln; a signal with a
# handler still ends the epoll_wait with EINTR
$TARGETS/wait_forever >$W/wf.out 2>&1 & WP=$!
await_out $W/wf.out ready $WP wait_forever
run_to 30 "$KILN" record -q --wall -p $WP -d 1 -o $W/wf.kiln 2>$W/e || fail "--wall attach to wait_forever: $(tail -1 $W/e)"
run_to 30 "$KILN" dump $WP >$W/wf.dump 2>$W/e || fail "dump wait_forever: $(tail -1 $W/e)"
run_to 30 "$KILN" record -q --heap --no-cpu -p $WP -d 0.3 -o $W/wfh.kiln >/dev/null 2>$W/e || fail "heap attach to wait_forever: $(tail -1 $W/e)"
F=$(folded $W/wf.kiln wall)
[ "$(weight $F '^epoll_wait$')" -gt 0 ] && [ "$(weight $F '^epoll_thread$')" -gt 0 ] || fail "wait_forever's --wall profile has no epoll_wait under epoll_thread: $(sort -t' ' -k2 -nr $F | head -3)"
grep -q '(sleeping in epoll_wait())' $W/wf.dump && grep -q '(sleeping in rt_sigtimedwait())' $W/wf.dump \
  || fail "kiln dump of wait_forever does not name its waits: $(grep ^Thread $W/wf.dump)"
kill -USR2 $WP; sleep 0.2; kill -USR1 $WP
wait $WP; eq $? 0 "wait_forever's status ($(tail -1 $W/wf.out))"
grep -q "sigwaitinfo by SIGUSR2, 0 early returns, [0-9]* timed" $W/wf.out || fail "a wait ended by kiln's stops: $(tail -1 $W/wf.out)"
ok "epoll_wait(-1) and sigwaitinfo under --wall ($(total $F) samples), dump and a heap attach: no early return, SIGUSR1 still ends the epoll_wait with EINTR"
# the same signals while --wall samples at 999 Hz: each still ends its
# wait; the timed waits kiln's stops ended (the program saw EINTR) are
# counted, as many as the program saw
$TARGETS/wait_forever >$W/wf2.out 2>&1 & WP=$!
await_out $W/wf2.out ready $WP wait_forever
run_to 30 "$KILN" record -q --wall -F 999 -p $WP -d 20 -o $W/wf2.kiln 2>$W/e & KP=$!
sleep 1; kill -USR2 $WP; sleep 0.2; kill -USR1 $WP
for i in $(seq 100); do kill -0 $WP 2>/dev/null || break; sleep 0.05; done
kill -0 $WP 2>/dev/null && { kill -9 $WP; fail "wait_forever did not end on SIGUSR2 and SIGUSR1 while sampled: $(cat $W/wf2.out)"; }
wait $KP; eq $? 0 "--wall attached until wait_forever ended: $(tail -1 $W/e)"
wait $WP; eq $? 0 "wait_forever's status, signalled while sampled"
grep -q "sigwaitinfo by SIGUSR2, 0 early returns, " $W/wf2.out || fail "signalled while sampled: $(tail -1 $W/wf2.out)"
t=$(sed -n 's/.*, \([0-9]*\) timed waits ended by EINTR$/\1/p' $W/wf2.out)
"$KILN" report $W/wf2.kiln >$W/wf2.rep || fail "report of wait_forever"
said=$(sed -n "s/^# waits: kiln's stops ([^)]*) ended \([0-9]*\) waits\{0,1\} with a timeout.*/\1/p" $W/wf2.rep)
[ "${t:-0}" -gt 0 ] || fail "no timed wait ended while sampled at 999 Hz: $(tail -1 $W/wf2.out)"
eq "${said:-0}" "$t" "timed waits ended with EINTR, the report against the program"
ok "the same at 999 Hz with SIGUSR2 and SIGUSR1 sent while sampled: each wait ended by its signal, none early; $t timed waits ended with EINTR, said so in the report"
# a heap attach (its stops to choose a thread, attach and detach) and kiln
# dump (one stop a thread) count the timed waits they ended, as many as the
# program saw
$TARGETS/wait_forever >$W/wf3.out 2>&1 & WP=$!
await_out $W/wf3.out ready $WP wait_forever
run_to 30 "$KILN" record -q --heap --no-cpu -p $WP -d 0.3 -o $W/wf3.kiln >/dev/null 2>$W/e || fail "heap attach to wait_forever: $(tail -1 $W/e)"
run_to 30 "$KILN" dump $WP >$W/wf3.dump 2>$W/e || fail "dump wait_forever: $(tail -1 $W/e)"
kill -USR2 $WP; sleep 0.2; kill -USR1 $WP
wait $WP; eq $? 0 "wait_forever's status after a heap attach and a dump ($(tail -1 $W/wf3.out))"
grep -q "sigwaitinfo by SIGUSR2, 0 early returns, " $W/wf3.out || fail "a wait ended early by a heap attach or a dump: $(tail -1 $W/wf3.out)"
t=$(sed -n 's/.*, \([0-9]*\) timed waits ended by EINTR$/\1/p' $W/wf3.out)
h=$("$KILN" report $W/wf3.kiln | sed -n "s/^# waits: kiln's stops ([^)]*) ended \([0-9]*\) waits\{0,1\} with a timeout.*/\1/p")
d=$(sed -n "s/^# waits: the stops ended \([0-9]*\) waits\{0,1\} with a timeout.*/\1/p" $W/wf3.dump)
eq $(( ${h:-0} + ${d:-0} )) "${t:-0}" "timed waits ended with EINTR: the heap attach's report (${h:-0}) and the dump (${d:-0}) against the program"
ok "a heap attach and a dump: no early return; ${h:-0} + ${d:-0} timed waits ended with EINTR, as the program saw ($t)"
# a program whose one thread waits with a timeout: the heap attach's stops
# (attach and detach) fall on it and end its waits; counted as it saw them
$TARGETS/timed_wait 40 100 >$W/tw.out 2>&1 & WP=$!
await_out $W/tw.out ready $WP timed_wait
run_to 30 "$KILN" record -q --heap --no-cpu -p $WP -d 0.5 -o $W/tw.kiln >/dev/null 2>$W/e || fail "heap attach to timed_wait: $(tail -1 $W/e)"
wait $WP; eq $? 0 "timed_wait's status"
t=$(sed -n 's/^timed_wait: \([0-9]*\) waits ended by EINTR$/\1/p' $W/tw.out)
h=$("$KILN" report $W/tw.kiln | sed -n "s/^# waits: kiln's stops ([^)]*) ended \([0-9]*\) waits\{0,1\} with a timeout.*/\1/p")
[ "${t:-0}" -gt 0 ] || fail "no wait of timed_wait's was ended by the heap attach's stops (the case tests nothing): $(cat $W/tw.out)"
eq "${h:-0}" "$t" "timed waits a heap attach ended, its report against the program"
ok "a heap attach's stops ended $t timed waits of timed_wait's, said so in the report"
