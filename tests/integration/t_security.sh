#!/bin/bash
# kiln run as root next to another user (kilnt, made here) and a hostile
# program: the attacks of issue 11 replayed. Each must be refused or
# harmless; the target and the recorder keep working; nothing outside what
# the user named is created, changed or deleted. Outputs: devices, FIFOs,
# /dev/stdout and '-' work for every command that writes.
source "$(dirname "$0")/lib.sh"
ROOT=yes; [ "$(id -u)" = 0 ] || ROOT=no
run_to 30 "$KILN" record -q -o $W/c.kiln -- $TARGETS/cpu_split 0.3 >/dev/null 2>&1 || fail "record"
run_to 30 "$KILN" record -q -o $W/c2.kiln -- $TARGETS/cpu_split 0.2 >/dev/null 2>&1 || fail "record 2"

# --- outputs: written through, never replaced
if [ $ROOT = yes ]; then mknod $W/null c 1 3 || fail mknod; else ln -s /dev/null $W/null; fi
mkfifo $W/fifo
for cmd in "export $W/c.kiln --format folded" "export $W/c.kiln --format json" "export $W/c.kiln --format svg" \
           "export $W/c.kiln --format speedscope" "flamegraph $W/c.kiln" "diff $W/c.kiln $W/c2.kiln --format folded" \
           "report $W/c.kiln"; do
  name=${cmd%% *}
  [ "$name" = report ] && continue
  $KILN $cmd -o $W/null >/dev/null 2>&1 || fail "'kiln $cmd -o DEVICE' failed"
  if [ $ROOT = yes ]; then [ -c $W/null ] || fail "'kiln $cmd -o DEVICE' replaced the device"; else [ -L $W/null ] || fail "$cmd replaced a symlink"; fi
  (timeout 10 cat $W/fifo >$W/fifo.out) & CP=$!; sleep 0.1
  run_to 10 $KILN $cmd -o $W/fifo >/dev/null 2>&1 || fail "'kiln $cmd -o FIFO' failed"
  wait $CP; [ -p $W/fifo ] || fail "'kiln $cmd -o FIFO' replaced the FIFO"; [ -s $W/fifo.out ] || fail "'kiln $cmd -o FIFO' wrote nothing"
  $KILN $cmd -o /dev/stdout >$W/so 2>/dev/null; [ -s $W/so ] || fail "'kiln $cmd -o /dev/stdout' wrote nothing"
  $KILN $cmd -o - >$W/so 2>/dev/null; [ -s $W/so ] || fail "'kiln $cmd -o -' wrote nothing"
done
[ -e /dev/null ] && [ -c /dev/null ] || fail "/dev/null is no longer a device"
ok "export, flamegraph, diff: devices, FIFOs, /dev/stdout and - written through"

# record into a device, a FIFO, stdout
run_to 30 "$KILN" record -q -o $W/null -- $TARGETS/cpu_split 0.1 >/dev/null 2>&1 || fail "record -o DEVICE"
if [ $ROOT = yes ]; then [ -c $W/null ] || fail "record replaced the device"; fi
(timeout 20 cat $W/fifo >$W/rec.fifo.kiln) & CP=$!
run_to 30 "$KILN" record -q -o $W/fifo -- $TARGETS/cpu_split 0.2 >/dev/null 2>&1 || fail "record -o FIFO"
wait $CP; [ -p $W/fifo ] || fail "record replaced the FIFO"
"$KILN" report $W/rec.fifo.kiln >/dev/null || fail "the profile written through a FIFO does not read back"
run_to 30 "$KILN" record -q -o - -- $TARGETS/cpu_split 0.2 >$W/rec.so.kiln 2>/dev/null || fail "record -o -"
"$KILN" report $W/rec.so.kiln >/dev/null || fail "the profile written to stdout does not read back"
run_to 30 "$KILN" record -q -o /dev/stdout -- $TARGETS/cpu_split 0.2 >$W/rec.so2.kiln 2>/dev/null || fail "record -o /dev/stdout"
"$KILN" report $W/rec.so2.kiln >/dev/null || fail "record -o /dev/stdout does not read back"
# a FIFO nobody reads when kiln starts: the program runs, the records wait
(sleep 1; timeout 20 cat $W/fifo >$W/late.kiln) & CP=$!
run_to 30 "$KILN" record -q -o $W/fifo -- $TARGETS/cpu_split 0.2 >/dev/null 2>&1 || fail "record -o FIFO read late"
wait $CP; "$KILN" report $W/late.kiln >/dev/null || fail "FIFO read late: no profile"
ok "record: device, FIFO (read at once and late), stdout and - written through"

# --- record deletes and truncates nothing it did not create
echo precious >$W/keep
"$KILN" record -o $W/keep -- $W/no-such-program >/dev/null 2>&1; eq $? 125 "record into a non-profile file: refused"
"$KILN" record -o $W/keep2 -- $W/no-such-program >/dev/null 2>&1; eq $? 127 "record of a missing program"
[ "$(cat $W/keep)" = precious ] || fail "a failed record truncated or deleted its -o"
[ -e $W/keep2 ] && fail "a failed record left a file at its -o"
cp $TARGETS/cpu_split $W/prog
"$KILN" record -o $W/prog -- $W/prog 0.1 >/dev/null 2>&1; eq $? 125 "-o PROG -- PROG refused"
cmp -s $W/prog $TARGETS/cpu_split || fail "-o PROG -- PROG changed the program"
cp $W/c.kiln $W/p.kiln; "$KILN" record -q -o $W/p.kiln -- $TARGETS/cpu_split 0.1 >/dev/null 2>&1 || fail "record over a profile"
cmp -s $W/p.kiln.old $W/c.kiln || fail "the older profile was not kept as NAME.old"
"$KILN" record -o $W/null2 -- $W/no-such-program >/dev/null 2>&1
ls -A $W | grep -q 'kiln-.*tmp' && fail "a temporary was left behind: $(ls -A $W)"
[ -e /dev/null ] && "$KILN" record -q -o /dev/null -- $W/no-such-program >/dev/null 2>&1
[ -c /dev/null ] || fail "record -o /dev/null -- typo removed /dev/null"
ok "record: nothing it did not create is deleted or truncated; an older profile kept as .old"

if [ $ROOT = no ]; then skip "attacks from another user (the suite is not root)"; exit 0; fi
id kilnt >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin kilnt 2>/dev/null || { skip "attacks from another user (cannot create one)"; exit 0; }
chmod 755 $W
as_user() { runuser -u kilnt -- "$@"; }

# --- planted folders and symlinks in /dev/shm
mkdir -p $W/victim; echo data >$W/victim/a; chmod 700 $W/victim
as_user ln -s $W/victim /dev/shm/kiln-AAAAAA 2>/dev/null
as_user ln -s $W/victim /dev/shm/kiln-32761-0 2>/dev/null
as_user mkdir -m 777 /dev/shm/kiln-BBBBBB 2>/dev/null
"$KILN" record -q --heap -o $W/sq.kiln -- $TARGETS/snap_prog $W/sqctl >/dev/null 2>&1 &
KP=$!; mkdir -p $W/sqctl
for i in $(seq 100); do [ -e $W/sqctl/ready1 ] && break; sleep 0.05; done
P=$(pgrep -P $KP -n)
for d in $(tr '\0' '\n' </proc/$P/environ | sed -n 's/^KILN_[A-Z]*=\(\/[^:]*\)$/\1/p'); do
  dir=$(dirname $d); [ -d "$dir" ] || continue
  [ "$(stat -c %U:%a $dir)" = root:700 ] || fail "the recorder's folder $dir is $(stat -c %U:%a $dir)"
  [ -L "$dir" ] && fail "the recorder's folder is a symlink"
done
# snapshot, too, writes through a device, a FIFO, /dev/stdout and -
run_to 10 "$KILN" snapshot $P -o $W/null >/dev/null || fail "snapshot -o DEVICE"
[ -c $W/null ] || fail "snapshot replaced the device"
(timeout 10 cat $W/fifo >$W/snap.fifo) & CP=$!
run_to 10 "$KILN" snapshot $P -o $W/fifo >/dev/null || fail "snapshot -o FIFO"
wait $CP; [ -p $W/fifo ] || fail "snapshot replaced the FIFO"
"$KILN" report $W/snap.fifo >/dev/null || fail "a snapshot through a FIFO does not read back"
run_to 10 "$KILN" snapshot $P -o - >$W/snap.so || fail "snapshot -o -"
"$KILN" report $W/snap.so >/dev/null || fail "snapshot -o - does not read back"
run_to 10 "$KILN" snapshot $P -o /dev/stdout >$W/snap.so2 || fail "snapshot -o /dev/stdout"
"$KILN" report $W/snap.so2 >/dev/null || fail "snapshot -o /dev/stdout does not read back"
ok "snapshot: device, FIFO, /dev/stdout and - written through"
# another user: no snapshot, no socket, no file of its choosing
mkdir -p $W/pub; chmod 1777 $W/pub
as_user timeout 10 "$KILN" snapshot $P -o $W/pub/stolen.snap >$W/as.out 2>&1; eq $? 1 "another user's snapshot: exit 1"
[ -e $W/pub/stolen.snap ] && fail "another user took a heap snapshot of root's program"
grep -q 'permission denied' $W/as.out || fail "another user's snapshot: no clear refusal: $(cat $W/as.out)"
cat >$W/atk.py <<'PY'
import glob, os, socket, sys
hit = 0
for path in glob.glob('/dev/shm/kiln-*/ctl') + glob.glob('/tmp/kiln-*/ctl'):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.settimeout(2); s.connect(path); s.send(b'snapshot %s' % sys.argv[1].encode())
        if s.recv(100).startswith(b'ok'): hit += 1
    except Exception: pass
    finally: s.close()
for line in open('/proc/net/unix'):
    f = line.split()
    if len(f) >= 8 and 'kiln' in f[-1] and f[-1].startswith('@'):
        hit += 100  # an abstract socket anyone could reach
sys.exit(hit)
PY
as_user timeout 10 python3 $W/atk.py $P; eq $? 0 "another user reaching root's recorder"
# a slow client (root's own, idle) does not hold the recorder or the program
python3 -c "
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1]); time.sleep(4)" \
  "$(tr '\0' '\n' </proc/$P/environ | sed -n 's/^KILN_CTL=//p')" & IDLE=$!
sleep 0.3
s0=$(date +%s%N); run_to 10 "$KILN" snapshot $P -o $W/legit.snap >/dev/null || fail "a snapshot while an idle client holds a connection"
[ $(( ($(date +%s%N) - s0) / 1000000 )) -lt 3000 ] || fail "an idle client slowed a snapshot to over 3 s"
kill $IDLE 2>/dev/null; wait $IDLE 2>/dev/null
touch $W/sqctl/go1; for i in $(seq 100); do [ -e $W/sqctl/ready2 ] && break; sleep 0.05; done; touch $W/sqctl/go2
wait $KP; eq $? 0 "recorder with squatted /dev/shm"
[ -e $W/victim/a ] || fail "root's kiln deleted files through another user's symlink"
[ -d /dev/shm/kiln-BBBBBB ] || fail "root's kiln removed another user's folder"
rm -rf /dev/shm/kiln-AAAAAA /dev/shm/kiln-32761-0 /dev/shm/kiln-BBBBBB
ok "another user: no snapshot, no socket, no squatting; idle clients do not block"

# --- perf maps another user plants, or that point elsewhere
for kind in fifo zero inject; do
  bash -c 'echo $$ >'$W'/apid; sleep 0.5; exec '"$KILN"' record -q -o '$W'/j.kiln -- '$TARGETS'/anon_code 0.5' >/dev/null 2>&1 & JP=$!
  sleep 0.25; JK=$(cat $W/apid); sleep 0.5; JC=$(pgrep -P $JK -n)
  [ -n "$JC" ] || fail "anon_code did not start"
  case $kind in
    fifo) as_user mkfifo /tmp/perf-$JC.map ;;
    zero) as_user ln -s /dev/zero /tmp/perf-$JC.map ;;
    inject) as_user bash -c "echo '0 ffffffffffffffff INJECTED' >/tmp/perf-$JC.map" ;;
  esac
  for i in $(seq 150); do kill -0 $JP 2>/dev/null || break; sleep 0.1; done
  if kill -0 $JP 2>/dev/null; then kill -9 $JP $JK 2>/dev/null; rm -f /tmp/perf-$JC.map; fail "perf map ($kind) hangs root's recorder"; fi
  rm -f /tmp/perf-$JC.map
  "$KILN" export $W/j.kiln --format folded | grep -q INJECTED && fail "another user's perf map named root's frames"
done
ok "perf maps: a FIFO, /dev/zero and another user's names are ignored"

# --- a mapped library swapped for a FIFO under an attach (kilnt profiles its own process)
mkdir -p $W/lib; cp $TARGETS/libdl_lib.so $W/lib/l.so; chown -R kilnt $W/lib
as_user $TARGETS/dl_hold $W/lib/l.so 6 >$W/dl.out & DP=$!
for i in $(seq 100); do grep -q loaded $W/dl.out 2>/dev/null && break; sleep 0.05; done
as_user bash -c "rm -f $W/lib/l.so && mkfifo $W/lib/l.so"
for who in kilnt root; do
  if [ $who = kilnt ]; then cmd="runuser -u kilnt --"; out=$W/lib/a.kiln; else cmd=; out=$W/a.kiln; fi
  run_to 20 $cmd "$KILN" record -q -p $DP -d 1 -o $out >/dev/null 2>$W/att.err; rc=$?
  [ $rc = 124 ] || [ $rc = 137 ] && fail "attach ($who) hung on a library swapped for a FIFO"
  if [ $who = kilnt ] && grep -q 'permission denied' $W/att.err; then
    skip "attach as an unprivileged user (perf_event_paranoid and ptrace_scope refuse it here)"; continue
  fi
  "$KILN" report $out >/dev/null || fail "attach ($who): no profile ($(cat $W/att.err))"
done
kill $DP 2>/dev/null; wait $DP 2>/dev/null
ok "attach: a mapped file swapped for a FIFO is not opened"

# --- a program posing as CPython 3.13 whose _Py_DebugOffsets name offsets
# past every structure kiln copies (issue 21, finding 2): root's attach
# refuses it in one line, samples it natively, and the program runs on
as_user $TARGETS/python_fake 20 & RP=$!
FP=
for i in $(seq 100); do FP=$(pgrep -u kilnt -x python_fake | head -1); [ -n "$FP" ] && break; sleep 0.05; done
[ -n "$FP" ] || fail "python_fake did not start"
run_to 30 "$KILN" record -p $FP -d 1 -o $W/fake.kiln >/dev/null 2>$W/fake.err; rc=$?
[ $rc = 0 ] || fail "attach to a fake CPython: exit $rc ($(tail -2 $W/fake.err))"
kill -0 $FP 2>/dev/null || fail "the fake CPython died under the attach"
"$KILN" report $W/fake.kiln >$W/fake.rep || fail "no profile of the fake CPython"
grep -q "_Py_DebugOffsets do not read as 3.13's: native frames only" $W/fake.rep || fail "the fake CPython not refused: $(grep python $W/fake.rep | head -2)"
grep -q "_PyEval_EvalFrameDefault" <("$KILN" export $W/fake.kiln --format folded) || fail "the fake CPython not sampled natively"
grep -q "python: pid $FP: .*do not read as 3.13's" $W/fake.err || fail "record did not say it: $(cat $W/fake.err)"
kill $FP; wait $RP 2>/dev/null
ok "a fake CPython with offsets past every buffer: refused in one line, sampled natively, unharmed"

# --- a program posing as CPython 3.13 whose thread list and frame chain
# come back on themselves (issue 21, finding 15): each read once round and
# said, no sample lost to it (samples as many as the recording's duration
# allows at 99 Hz, within 30 %)
run_to 30 "$KILN" record --wall -o $W/loops.kiln -- $TARGETS/python_loops 1 >/dev/null 2>$W/loops.err || fail "record python_loops: $(tail -1 $W/loops.err)"
"$KILN" report $W/loops.kiln >$W/loops.rep || fail "report python_loops"
grep -q 'whose Python frame chain came back on itself' $W/loops.rep || fail "a cyclic frame chain not named as such: $(grep python $W/loops.rep)"
grep -q 'its thread list came back on itself' $W/loops.rep || fail "a cyclic thread list not said: $(grep python $W/loops.rep)"
read -r d n < <(awk '/^# duration/ { print $3, $5 }' $W/loops.rep)
awk -v d=$d -v n=$n 'BEGIN { exit !(n >= 0.7 * d * 99) }' || fail "python_loops: $n samples in $d s at 99 Hz"
ok "a cyclic thread list and frame chain: read once round, said, $n samples in $d s"

# --- a .gnu_debuglink naming a FIFO, then a symlink to /dev/zero, beside
# another user's binary (issue 21, finding 3): root's attach opens neither
# (a writer blocked on the FIFO stays blocked), finishes, and names the
# functions from the binary's own symbols
mkdir -p $W/dbg; cp $TARGETS/cpu_split $W/dbg/prog; objcopy --only-keep-debug $W/dbg/prog $W/dbg/prog.debug
strip --strip-debug $W/dbg/prog && objcopy --add-gnu-debuglink=$W/dbg/prog.debug $W/dbg/prog || fail "objcopy"
chown -R kilnt $W/dbg
for plant in fifo zero; do
  as_user rm -f $W/dbg/prog.debug
  if [ $plant = fifo ]; then as_user mkfifo $W/dbg/prog.debug; else as_user ln -s /dev/zero $W/dbg/prog.debug; fi
  WP=
  [ $plant = fifo ] && { as_user timeout 20 sh -c "echo opened >$W/dbg/prog.debug" & WP=$!; }
  as_user $W/dbg/prog 6 >/dev/null & UP=$!
  GP=
  for i in $(seq 100); do GP=$(pgrep -u kilnt -x prog | head -1); [ -n "$GP" ] && break; sleep 0.05; done
  [ -n "$GP" ] || fail "the program did not start"
  run_to 20 "$KILN" record -q -p $GP -d 1 -o $W/dbg.kiln >/dev/null 2>$W/dbg.err; rc=$?
  [ $rc = 0 ] || fail "attach with a debuglink to a $plant: exit $rc ($(tail -1 $W/dbg.err))"
  kill -0 $GP 2>/dev/null || fail "the program died under the attach ($plant)"
  kill $GP; wait $UP 2>/dev/null
  if [ -n "$WP" ]; then
    kill -0 $WP 2>/dev/null || fail "kiln opened the FIFO a debuglink named (its writer got through)"
    pkill -P $WP; kill $WP 2>/dev/null; wait $WP 2>/dev/null
  fi
  grep -q ';frame_a;spin [0-9]*$' <("$KILN" export $W/dbg.kiln --format folded) || fail "functions not named ($plant)"
done
ok "a debuglink to a FIFO or to /dev/zero beside another user's binary: never opened, the attach ends, names kept"
