#!/usr/bin/env bash
# Compares the speed of ggml as this project builds it (CGO flags from Taskfile.yaml, tuned for
# the CPU) with a plain cgo build (Go's default CGO_CFLAGS "-O2 -g": SSE2 only), on the same
# generated model, in the same run, alternating the two binaries to share the machine's noise.
# The plain build compiles llama.cpp once more (minutes) into the Go cache.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "building the benchmark with this project's flags: $CGO_CFLAGS"
go test -c -o "$out/fast.test" ./engine/llamacpp
echo "building the benchmark with plain cgo flags: -O2 -g (this compiles llama.cpp again)"
CGO_CFLAGS="-O2 -g" CGO_CXXFLAGS="-O2 -g" go test -c -o "$out/plain.test" ./engine/llamacpp

model=${SYN4PSE_BENCH_MODEL:-$out/bench.gguf}
if [ ! -f "$model" ]; then
  go run ./cmd/tinygguf -arch llama -size bench -o "$model" >/dev/null
fi
rounds=${ROUNDS:-3}
for i in $(seq "$rounds"); do
  for build in fast plain; do
    SYN4PSE_BENCH_MODEL=$model "$out/$build.test" -test.run '^$' -test.bench BenchmarkGenerate -test.benchtime 2x \
      | awk -v b="$build" '/^BenchmarkGenerate/ { for (i = 1; i <= NF; i++) { if ($i == "pp_tok/s") pp = $(i-1); if ($i == "tg_tok/s") tg = $(i-1) } print b, pp, tg }'
  done
done | awk '
  { pp[$1] += $2; tg[$1] += $3; n[$1]++ ; printf "%-6s pp %8.1f tok/s  tg %7.1f tok/s\n", $1, $2, $3 }
  END {
    printf "mean   fast pp %.1f tg %.1f | plain pp %.1f tg %.1f tok/s\n", pp["fast"]/n["fast"], tg["fast"]/n["fast"], pp["plain"]/n["plain"], tg["plain"]/n["plain"]
    printf "ratio  fast/plain: prompt %.2fx, generation %.2fx\n", pp["fast"]/pp["plain"], tg["fast"]/tg["plain"]
  }'
