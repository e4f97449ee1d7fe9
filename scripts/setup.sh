#!/bin/bash
# Install what kiln needs on Debian, build it, and profile the bundled demo.
#   bash scripts/setup.sh            install (sudo when not root), build, run the demo
#   bash scripts/setup.sh --deps     install only
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
PKGS="build-essential cmake pkg-config libunwind-dev libdw-dev libelf-dev libjansson-dev
  libcriterion-dev zlib1g-dev libzstd-dev libbpf-dev linux-perf heaptrack clang libclang-rt-14-dev python3 valgrind
  chromium"
missing=
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
command -v npm >/dev/null || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
  echo "== installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# the browser test drives Chromium with playwright-core (no browser download)
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund >/dev/null 2>&1) || echo "warning: npm ci in tests/browser failed; the browser test will fail"
fi
[ "${1:-}" = "--deps" ] && exit 0
echo "== building (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== profiling the demo: build/targets/cpu_split (60% frame_a, 30% frame_b, 10% frame_c)"
build/kiln record -o build/demo.kiln -- build/targets/cpu_split 1
build/kiln report build/demo.kiln --limit 12
build/kiln flamegraph build/demo.kiln -o build/demo.svg && echo "== flamegraph: build/demo.svg"
