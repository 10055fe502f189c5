#!/usr/bin/env bash
# Measures what the portable build costs or gains, on the same generated model, in one run,
# alternating the contenders so they share the machine's noise:
#
#   portable  the default build: generic code in the binary + the variant library ggml picks
#   native    MARCH=native: the code in the binary compiled for this CPU, no variant library
#   builtin   the default build forced onto its generic code (engine.cpu_variant = "builtin")
#
# and, on a CPU with AMX, AMX on (sapphirerapids) vs off (the best variant without AMX) on a
# quantized model wide enough for ggml's AMX kernels. The native build compiles llama.cpp once
# more (minutes) into the Go cache.
#
#   scripts/bench-build.sh LIBDIR        ROUNDS=3 BENCH_QUANT=q4_0 BENCH_SIZE=bench by default
set -euo pipefail
cd "$(dirname "$0")/.."
libdir=${1:-bin/lib}
libdir=$(cd "$libdir" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "building the portable benchmark"
bash scripts/go.sh test -c -o "$out/portable.test" ./engine/llamacpp
echo "building the -march=native benchmark (compiles llama.cpp again the first time)"
MARCH=native bash scripts/go.sh test -c -o "$out/native.test" ./engine/llamacpp

rounds=${ROUNDS:-3}
quant=${BENCH_QUANT-q4_0}
# bench BINARY VARIANT [ENV...]: prints "pp tg" tokens/s of one BenchmarkGenerate run
bench() {
  local binary=$1 variant=$2
  shift 2
  env SYN4PSE_ENGINE_LIBRARY_PATH="$libdir" LLAMACPP_TEST_CPU_VARIANT="$variant" BENCH_QUANT="$quant" "$@" \
    "$out/$binary.test" -test.run '^$' -test.bench '^BenchmarkGenerate$' -test.benchtime 2x |
    awk '/^BenchmarkGenerate/ { for (i = 1; i <= NF; i++) { if ($i == "pp_tok/s") pp = $(i-1); if ($i == "tg_tok/s") tg = $(i-1) } print pp, tg }'
}
# compare NAME:BINARY:VARIANT...: alternates the contenders ROUNDS times, prints means and ratios
# of each against the first
compare() {
  local spec name binary variant
  for i in $(seq "$rounds"); do
    for spec in "$@"; do
      IFS=: read -r name binary variant <<<"$spec"
      echo "$name $(bench "$binary" "$variant" ${BENCH_ENV:-})"
    done
  done | awk -v first="${1%%:*}" '
    { pp[$1] += $2; tg[$1] += $3; n[$1]++; if (!($1 in seen)) { order[++k] = $1; seen[$1] = 1 }
      printf "%-10s pp %8.1f tok/s  tg %7.1f tok/s\n", $1, $2, $3 }
    END {
      for (i = 1; i <= k; i++) { c = order[i]
        printf "mean %-10s pp %8.1f  tg %7.1f tok/s", c, pp[c]/n[c], tg[c]/n[c]
        if (c != first) printf "   %s/%s: prompt %.2fx, generation %.2fx", first, c, (pp[first]/n[first])/(pp[c]/n[c]), (tg[first]/n[first])/(tg[c]/n[c])
        printf "\n" } }'
}

echo "== model: tinygguf ${BENCH_SIZE:-bench}, ${quant:-f16}; variant picked here: $(
  SYN4PSE_ENGINE_LIBRARY_PATH="$libdir" "$out/portable.test" -test.run '^TestCPUVariantMatchesCPU$' -test.v 2>/dev/null | sed -n 's/.*chosen \([^ ]*\) from.*/\1/p')"
compare portable:portable:auto native:native:builtin builtin:portable:builtin

if grep -q amx_int8 /proc/cpuinfo 2>/dev/null; then
  best_no_amx=$(ls "$libdir" | sed -n 's/^libggml-cpu-\(zen4\|icelake\)\.so$/\1/p' | head -1)
  echo "== AMX on (sapphirerapids) vs off ($best_no_amx): tinygguf wide (n_embd 2048), $quant"
  BENCH_ENV="BENCH_SIZE=wide" compare amx:portable:sapphirerapids "noamx:portable:$best_no_amx"
else
  echo "== no AMX on this CPU: AMX on/off not measured"
fi
