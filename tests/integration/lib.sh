# Helpers for the integration tests: each test runs the real kiln on real
# programs and asserts numbers. A test prints "ok: ..." lines and exits
# non-zero at the first failed assertion.
set -u
: "${KILN:?}" "${TARGETS:?}"
W=$(mktemp -d /tmp/kiln-test.XXXXXX)
# on exit every process the test started goes too, with its own children: a
# failed assertion must not leave a recorder or a program in the background
# holding ctest's output open until the test's timeout
reap() { local p; for p in $(pgrep -P "$1"); do reap "$p"; kill -9 "$p" 2>/dev/null; done; }
cleanup() { reap $$; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
run_to() { local s=$1; shift; timeout -k 5 "$s" "$@"; }
# folded FILE METRIC [args]: export folded stacks, print the path
folded() {
  local f=$1 m=$2; shift 2
  local out=$W/$(basename "$f").$m.$RANDOM.folded
  "$KILN" export "$f" --format folded --metric "$m" "$@" -o "$out" || return 1
  echo "$out"
}
# share FOLDED REGEX: percent of weight whose stack has a frame matching REGEX
share() {
  awk -v re="$2" '{ n=$NF; $NF=""; sub(/ $/, ""); tot+=n; k=split($0, f, ";"); for (i=1;i<=k;i++) if (f[i] ~ re) { hit+=n; break } }
    END { if (tot == 0) print "nan"; else printf "%.2f\n", 100*hit/tot }' "$1"
}
weight() {
  awk -v re="$2" '{ n=$NF; $NF=""; sub(/ $/, ""); k=split($0, f, ";"); for (i=1;i<=k;i++) if (f[i] ~ re) { hit+=n; break } }
    END { printf "%d\n", hit }' "$1"
}
total() { awk '{ s+=$NF } END { printf "%d\n", s }' "$1"; }
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d=a-b; if (d<0) d=-d; exit !(a==a && d<=t) }'; }
eq() { [ "$1" = "$2" ] || fail "$3: got $1, want $2"; }
# skip WHY: say so (a skipped case never counts as passed)
skip() { echo "skipped: $*"; }
# await_out FILE TEXT PID [WHAT]: until FILE holds TEXT, for 60 s at most or
# until PID ends (a program's start-up on a loaded host is no time to bound
# tightly: Python 3.13 beside Chromium once took over 10 s to its "ready").
# Empty FILE before starting the program where a loop uses it again: the
# shell empties it in the child, after the fork, and the last run's TEXT
# can be read first (CI: a dump taken before Python 3.12 was ready)
await_out() {
  local i
  for i in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; kill -0 "$3" 2>/dev/null || break; sleep 0.1; done
  grep -q "$2" "$1" 2>/dev/null || fail "${4:-$1}: no '$2' in its output within 60 s: $(tail -3 "$1" 2>/dev/null)"
}
# cpu_s PID: CPU seconds (user+system) the process has had so far; sample
# counts are checked against it, never against wall time, so a busy host is
# no failure and a broken sampler still is
cpu_s() { awk -v hz=$(getconf CLK_TCK) '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.3f\n", (f[12] + f[13]) / hz }' /proc/$1/stat 2>/dev/null || echo 0; }
# at_least N FRACTION SECONDS HZ: N >= FRACTION * SECONDS * HZ
at_least() { awk -v n="$1" -v f="$2" -v s="$3" -v hz="$4" 'BEGIN { exit !(n >= f * s * hz) }'; }
# find_pythons V...: pys=() of Debian's python3.11 and pyenv's newest of each
# version V; each missing one is said as skipped. Under the sanitizers
# (KILN_REDUCED) only the first (the -Werror stage ran them all).
find_pythons() {
  pys=()
  [ -x /usr/bin/python3.11 ] && pys+=(/usr/bin/python3.11) || skip "Debian's /usr/bin/python3.11 is not installed"
  local root p v
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for v in "$@"; do
    p=$(ls -d "$root"/versions/$v.*/bin/python$v 2>/dev/null | sort -V | tail -1)
    if [ -n "$p" ] && [ -x "$p" ]; then pys+=("$p"); else skip "CPython $v: not installed under $root/versions"; fi
  done
  [ ${#pys[@]} -gt 0 ] || { skip "no CPython at all"; exit 0; }
  # first_of_minor PY: true for the first interpreter found of its X.Y (a
  # second build of the same version reads through the same table row)
  seen_minors=" "
  if [ -n "${KILN_REDUCED:-}" ] && [ ${#pys[@]} -gt 1 ]; then
    skip "under the sanitizers only ${pys[0]} (the -Werror stage ran all ${#pys[@]}): ${pys[*]:1}"
    pys=("${pys[0]}")
  fi
}
# hogs: two CPU hogs beside the test (yes >/dev/null x2), killed at exit:
# races show where the machine is busy
# (each ends by itself within 10 minutes: a test killed by its timeout
# leaves none behind)
first_of_minor() {
  local v
  v=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || return 1
  case "$seen_minors" in *" $v "*) return 1 ;; esac
  seen_minors="$seen_minors$v "
}
hogs() {
  timeout 600 yes >/dev/null 2>&1 & HOG1=$!
  timeout 600 yes >/dev/null 2>&1 & HOG2=$!
  trap 'pkill -P $HOG1; pkill -P $HOG2; kill $HOG1 $HOG2 2>/dev/null; cleanup' EXIT
}
