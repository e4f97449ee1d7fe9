#!/bin/bash
# Reliability: corrupt and truncated files, a recorder killed by SIGKILL, a
# full disk, a recorder that dies under a heap-tracked program.
source "$(dirname "$0")/lib.sh"
MUTATE=$(dirname "$KILN")/mutate
run_to 60 "$KILN" record -q -o $W/cpu.kiln -- $TARGETS/cpu_split 0.5 >/dev/null || fail "record cpu"
run_to 60 "$KILN" record -q --heap -o $W/heap.kiln -- $TARGETS/leaky >/dev/null || fail "record heap"
run_to 60 "$KILN" record -q --heap -o $W/fe.kiln -- $TARGETS/fork_exec $TARGETS/leaky >/dev/null || fail "record fork"
# profiles are compressed (a zstd block per flush); one stored as it is too,
# so mutations reach the record decoders as well as the block reader
run_to 60 "$KILN" record -q --heap --no-compress -o $W/raw.kiln -- $TARGETS/leaky >/dev/null || fail "record --no-compress"
# in-process: every truncation and 10,000 mutations per seed (2,000 under
# the sanitizers, whose stage runs libFuzzer on the same reader too)
muts=10000
[ -n "${KILN_REDUCED:-}" ] && { muts=2000; skip "under the sanitizers 2,000 mutations per seed of 10,000 (the -Werror stage ran 10,000)"; }
run_to 600 "$MUTATE" $muts $W/cpu.kiln $W/heap.kiln $W/fe.kiln $W/raw.kiln >$W/m || fail "mutation run crashed: $(tail -3 $W/m)"
ok "$(cat $W/m)"
# the real binary: cuts at 8, 64, 256 B and every 4 KiB; a few hundred mutations
check() {
  run_to 10 "$KILN" report "$1" >/dev/null 2>$W/e; local rc=$?
  [ $rc -le 1 ] || fail "report of $2 exits $rc"
  [ $rc -eq 0 ] || [ "$(wc -l <$W/e)" -eq 1 ] || fail "report of $2: not one line: $(cat $W/e)"
}
sz=$(stat -c %s $W/heap.kiln)
for cut in 0 8 64 256 $(seq 4096 4096 $sz) $((sz - 1)); do
  head -c $cut $W/heap.kiln >$W/cut; check $W/cut "a file cut at $cut B"
done
head -c $((sz - 1)) $W/heap.kiln >$W/cut
"$KILN" report $W/cut 2>$W/e >/dev/null; eq $? 0 "a file cut short reports"
grep -q 'warning: .*cut short' $W/e || fail "a file cut short warns: $(cat $W/e)"
python3 - $W/heap.kiln $W <<'PY'
import random, sys
data = bytearray(open(sys.argv[1], 'rb').read()); r = random.Random(11)
for i in range(300):
    d = bytearray(data)
    for _ in range(r.randint(1, 6)):
        d[r.randrange(len(d))] = r.randrange(256)
    open(f"{sys.argv[2]}/mut{i}", 'wb').write(d)
PY
for i in $(seq 0 299); do check $W/mut$i "mutation $i"; done
"$KILN" report $W/mut7 >/dev/null 2>$W/e; grep -q "$W/mut7" $W/e || [ ! -s $W/e ] || fail "errors name the file"
head -c 5000 /dev/urandom >$W/rand; check $W/rand "random bytes"
ok "truncations and mutations: exit 0 or 1, never a signal"

# SIGKILL of the recorder: the file reports what was recorded until ~1 s before
$TARGETS/cpu_split 4 >/dev/null &  # a reference for timing
"$KILN" record -o $W/killed.kiln -- $TARGETS/cpu_split 4 >/dev/null 2>&1 & KP=$!
sleep 2.5
CP=$(pgrep -P $KP cpu_split)
cs=$(cpu_s $CP)  # what the program got: the file holds samples of all but its last flush (0.5 s)
kill -9 $KP; wait $KP 2>/dev/null
sleep 0.2
[ -n "$CP" ] && { st=$(awk '/^State/{print $2}' /proc/$CP/status 2>/dev/null); [ "$st" != T ] && [ "$st" != t ] || fail "launched program left stopped"; }
"$KILN" report $W/killed.kiln >/dev/null 2>$W/e; eq $? 0 "report of a killed recording"
grep -q 'interrupted' $W/e || fail "no warning for a killed recording: $(cat $W/e)"
n=$(total $(folded $W/killed.kiln cpu 2>/dev/null))
at_least $n 0.7 $(awk -v c=$cs 'BEGIN { print c - 0.6 }') 999 || fail "killed recording kept $n samples of a program that had $cs CPU s"
ok "kill -9 of the recorder: $n samples kept ($cs CPU s), program running"
wait

# heap: the recorder dies, the program runs on unharmed (no SIGPIPE, no hang)
"$KILN" record -q --heap --no-cpu -o $W/hk.kiln -- $TARGETS/alloc_heavy 30 >$W/ah.out 2>&1 & KP=$!
sleep 0.5
AP=$(pgrep -P $KP alloc_heavy)
kill -9 $KP; wait $KP 2>/dev/null
[ -n "$AP" ] || fail "no alloc_heavy child"
for i in $(seq 200); do kill -0 $AP 2>/dev/null || break; sleep 0.1; done
kill -0 $AP 2>/dev/null && fail "alloc_heavy hangs after its recorder died"
grep -q 'alloc_heavy done' $W/ah.out || fail "alloc_heavy did not finish: $(cat $W/ah.out)"
ok "recorder killed under --heap: the program finished"

# a full disk: one clear line, non-zero exit, the program unharmed
if [ "$(id -u)" = 0 ] && mkdir -p $W/tiny && mount -t tmpfs -o size=64k tmpfs $W/tiny 2>/dev/null; then
  # leave about 1.5 KiB free: the header fits, the first symbols do not
  dd if=/dev/zero of=$W/tiny/fill bs=1k count=$(( $(df -k --output=avail $W/tiny | tail -1) - 2 )) 2>/dev/null
  head -c 2560 /dev/zero >$W/tiny/fill2 2>/dev/null; rm -f $W/tiny/fill2
  run_to 60 "$KILN" record -o $W/tiny/x.kiln -- $TARGETS/cpu_split 2 >$W/cs.out 2>$W/e; rc=$?
  [ $rc -ne 0 ] || fail "record on a full disk exits 0"
  [ "$(grep -c . $W/e)" -eq 1 ] || fail "full disk: not one line: $(cat $W/e)"
  grep -q 'No space left' $W/e || fail "full disk message: $(cat $W/e)"
  for i in $(seq 300); do grep -q 'cpu_split done' $W/cs.out && break; sleep 0.1; done
  grep -q 'cpu_split done' $W/cs.out || fail "the program did not run on after a full disk"
  if [ -e $W/tiny/x.kiln ]; then  # what fitted: whole records, read with a warning
    "$KILN" report $W/tiny/x.kiln >/dev/null 2>$W/re; eq $? 0 "report of the full-disk file (the whole records that fitted)"
    grep -q 'interrupted' $W/re || fail "report of the full-disk file: no warning: $(cat $W/re)"
  fi  # (nothing fitted: kiln removed its own empty file)
  # every exporter says a write error in one line naming the file
  for fmt in svg folded json speedscope pprof; do
    "$KILN" export $W/cpu.kiln --format $fmt -o $W/tiny/out.$fmt >/dev/null 2>$W/xe; eq $? 1 "export $fmt to a full disk"
    grep -q "cannot write $W/tiny/out.$fmt: No space left" $W/xe && [ $(wc -l <$W/xe) = 1 ] || fail "export $fmt to a full disk: $(cat $W/xe)"
    [ -e $W/tiny/out.$fmt ] && fail "export $fmt left a partial file"
  done
  umount $W/tiny
  ok "full disk: '$(cat $W/e)', program ran on, whole records kept, every exporter says so"
else
  skip "full disk (needs root to mount a tmpfs)"
fi

# a huge file is read as a stream: refused at its first bad record, in
# bounded memory (a 60 GB sparse file once aborted; a 3 GB one took 3 GB)
head -c 200 $W/cpu.kiln >$W/huge.kiln && truncate -s 60G $W/huge.kiln 2>/dev/null
if [ -e $W/huge.kiln ]; then
  python3 - "$KILN" $W/huge.kiln <<'PY' || fail "a 60 GB sparse file"
import resource, subprocess, sys
p = subprocess.run([sys.argv[1], "report", sys.argv[2]], capture_output=True, timeout=30)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
assert p.returncode == 1, p.returncode
assert len(p.stderr.decode().strip().splitlines()) == 1, p.stderr
assert rss < 64 * 1024, "%d KiB" % rss
PY
  rm -f $W/huge.kiln
  ok "a 60 GB sparse file: one line, exit 1, bounded memory"
else
  skip "60 GB sparse file (the file system refuses it)"
fi
mkfifo $W/pf; (cat $W/cpu.kiln >$W/pf &)
"$KILN" report $W/pf >/dev/null || fail "a profile read through a FIFO"
ok "a profile read through a FIFO"

# 400,000 heap-loss records, each for a pid of its own (what forged loss
# messages once made a recorder write; issue 21, finding 10): read in linear
# time (the old reader searched the list for each record: minutes), every
# one counted
"$(dirname "$KILN")/gen_profile" $W/loss.kiln 100 400000 || fail "gen_profile with losses"
run_to 60 "$KILN" report $W/loss.kiln --json >$W/loss.json || fail "report of 400,000 loss records: exit $? (quadratic?)"
eq "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['heap_lost_events']['no_ring'])" $W/loss.json)" 400000 "loss records counted"
ok "400,000 loss records for 400,000 pids: read, each counted"
