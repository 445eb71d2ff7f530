#!/usr/bin/env bash
# run.sh: builds the libFuzzer targets with clang + ASan/UBSan in their own build dir and runs each
# for a bounded time on its seed corpus (tests/fuzz/corpus/<target>/). Usage: tests/fuzz/run.sh [seconds]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-45}
build="$root/build/fuzz"
cxx=$(command -v clang++ || command -v clang++-14)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DSHRINK_BUILD_FUZZERS=ON -DSHRINK_BUILD_BENCHMARKS=OFF -DSHRINK_BUILD_EXAMPLES=OFF -DSHRINK_BUILD_TOOLS=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" >/dev/null
targets="safetensors npy compressed_metadata"
[ -f "$root/include/shrink/encode/huffman.hpp" ] && targets="$targets huffman"
for t in $targets; do cmake --build "$build" --target "fuzz_$t"; done
for t in $targets; do
  echo "== fuzz_$t for ${seconds}s"
  work=$(mktemp -d)
  cp "$root/tests/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
  # New inputs go to a scratch corpus; the committed seeds stay as they are.
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 "$work" \
    "$root/tests/fuzz/corpus/$t" 2>&1 | tail -n 8
  rm -rf "$work"
done
