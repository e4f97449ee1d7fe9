#!/bin/bash
# The whole test suite: a -Werror build with unit and integration tests, then
# an ASan+UBSan build of the CLI and readers running the suite again.
#   bash scripts/test.sh          everything (what CI runs)
#   bash scripts/test.sh --quick  the -Werror build's tests only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --deps
J=$(nproc)
SECONDS=0
stage() { echo "== $* (at ${SECONDS} s)"; }
stage "build (Release, -Werror)"
cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON >/dev/null
cmake --build build-ci -j"$J" >/dev/null
(cd build-ci && ctest --output-on-failure -j"$J" --timeout 300)
[ "${1:-}" = "--quick" ] && exit 0
stage "build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_WERROR=ON -DKILN_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$J" >/dev/null
# KILN_REDUCED: the slowest integration tests run a part of their cases
# again under the sanitizers (each says which); the -Werror stage ran all.
# One test at a time here: a sanitized recorder beside another test's falls
# behind enough to drop (counted) heap events that the exact tests demand;
# the unit tests and those that record no exact heap and time nothing
# (label sidebyside, tests/CMakeLists.txt) run two at a time first.
(cd build-asan && export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  KILN_REDUCED=1 && ctest --output-on-failure -L sidebyside -j2 --timeout 600 &&
  ctest --output-on-failure -LE sidebyside -j1 --timeout 600)
stage "libFuzzer on the profile reader (60 s, clang, ASan+UBSan)"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKILN_FUZZ=ON -DKILN_SANITIZE=ON -DKILN_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$J" --target fuzz_profile >/dev/null
CORPUS=$(mktemp -d /tmp/kiln-corpus.XXXXXX)
# records as they are (the fuzzer reaches the decoders) and compressed (the
# block reader: zstd frames, declared sizes, records inside blocks)
build-ci/kiln record -q --no-compress -o "$CORPUS/cpu.kiln" -- build-ci/targets/cpu_split 0.3 >/dev/null
build-ci/kiln record -q --no-compress --heap -o "$CORPUS/heap.kiln" -- build-ci/targets/leaky >/dev/null
build-ci/kiln record -q -o "$CORPUS/cpu-z.kiln" -- build-ci/targets/cpu_split 0.3 >/dev/null
# asyncio task stacks and loop stretches (SLOW records), where a python3 is
command -v python3 >/dev/null && build-ci/kiln record -q --wall --no-compress -o "$CORPUS/async.kiln" -- \
  python3 tests/targets/py_async.py >/dev/null
build-ci/kiln record -q --heap -o "$CORPUS/fork.kiln" -- build-ci/targets/fork_exec build-ci/targets/leaky >/dev/null
# a crash (or leak, or UBSan finding) makes libFuzzer exit non-zero: the run
# fails; what it did is printed from its own statistics, never a fixed line
if build-fuzz/fuzz_profile -max_total_time="${FUZZ_SECONDS:-60}" -max_len=65536 -print_final_stats=1 \
  "$CORPUS" 2>"$CORPUS/log"; then fuzz_ok=1; else fuzz_ok=0; fi
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$CORPUS/log")
edges=$(grep -o 'cov: [0-9]*' "$CORPUS/log" | tail -1 | cut -d' ' -f2)
[ "$fuzz_ok" = 1 ] || { tail -40 "$CORPUS/log"; echo "fuzz: 0 passed, 1 failed"; exit 1; }
[ "${edges:-0}" -ge 200 ] || { echo "fuzz: only ${edges:-0} coverage edges: the fuzzer is blind"; echo "fuzz: 0 passed, 1 failed"; exit 1; }
echo "fuzz: ${execs:-?} executions, ${edges} coverage edges, no finding"
rm -rf "$CORPUS"
echo "fuzz: 1 passed, 0 failed"
stage "done"
