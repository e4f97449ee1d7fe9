#!/bin/bash
# The whole test suite: a -Werror build with unit and integration tests, then
# an ASan+UBSan build of the CLI and readers running the suite again.
#   bash scripts/test.sh          everything (what CI runs)
#   bash scripts/test.sh --quick  the -Werror build's tests only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --deps
J=$(nproc)
echo "== build (Release, -Werror)"
cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON >/dev/null
cmake --build build-ci -j"$J" >/dev/null
(cd build-ci && ctest --output-on-failure -j"$J" --timeout 300)
[ "${1:-}" = "--quick" ] && exit 0
echo "== build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_WERROR=ON -DKILN_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$J" >/dev/null
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --output-on-failure -j"$J" --timeout 600 -LE nosan)
