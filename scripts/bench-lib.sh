# Shared by the benchmark scripts: build kiln (Release) and the targets once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
B=${BUILD:-build-bench}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$B" -j"$(nproc)" >/dev/null   # incremental: always the checkout's code
KILN=$B/kiln; T=$B/targets
W=$(mktemp -d /tmp/kiln-bench.XXXXXX); trap 'rm -rf "$W"' EXIT
ns() { local s; s=$(date +%s%N); "$@" >/dev/null 2>&1; echo $(( $(date +%s%N) - s )); }
best() { local n=$1 m=999999999999999 v i; shift; for ((i=0;i<n;i++)); do v=$(ns "$@"); [ "$v" -lt "$m" ] && m=$v; done; echo "$m"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a/b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.0f ms", a/1e6 }'; }
