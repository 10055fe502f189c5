#!/usr/bin/env bash
# Runs the go command with the one set of cgo flags every build, test and CI run uses, so the
# Go build cache keeps the ~5-minute llama.cpp compile between runs.
#
#   scripts/go.sh build -o bin/syn4pse ./cmd/syn4pse
#   MARCH=native scripts/go.sh build ...     # the -march=native development build
#   scripts/go.sh --print-env                # the exports, for eval in a shell
#
# The default build is portable: the code compiled into the binary targets the architecture's
# baseline, and the fast CPU code comes from the variant libraries (task build-third-party) that
# the node picks at run time for the CPU it runs on. CGO_CFLAGS, CGO_CXXFLAGS and CGO_CPPFLAGS
# from the caller's environment are replaced, with a note when they differed: an exported value
# (even an empty one) would otherwise drop the include paths or the optimisation silently.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

module=$(cd "$root" && go list -m -f '{{.Dir}}' github.com/ollama/ollama 2>/dev/null || true)
if [ -z "$module" ]; then
  (cd "$root" && go mod download github.com/ollama/ollama)
  module=$(cd "$root" && go list -m -f '{{.Dir}}' github.com/ollama/ollama)
fi

case "${MARCH:-}" in
"" | portable) opt="-O3" ;;
*)
  opt="-O3 -march=$MARCH"
  # -march for an AMX CPU (native on a Sapphire Rapids, or sapphirerapids) makes ggml-cpu.cpp call
  # the AMX kernels, which no cgo package compiles: the link fails. The sapphirerapids variant
  # library carries them; the code compiled into the binary never does.
  if [ "$(uname -m)" = x86_64 ]; then opt="$opt -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
  ;;
esac

declare -A want=(
  [CGO_CFLAGS]="$opt"
  [CGO_CXXFLAGS]="$opt"
  [CGO_CPPFLAGS]="-I$module/llama/llama.cpp/include -I$module/ml/backend/ggml/ggml/include -I$module/llama/llama.cpp/tools/mtmd"
)

if [ "${1:-}" = --print-env ]; then
  echo "export CGO_ENABLED=1"
  for v in CGO_CFLAGS CGO_CXXFLAGS CGO_CPPFLAGS; do echo "export $v='${want[$v]}'"; done
  exit 0
fi

for v in CGO_CFLAGS CGO_CXXFLAGS CGO_CPPFLAGS; do
  if [ -n "${!v+set}" ] && [ "${!v}" != "${want[$v]}" ]; then
    echo "note: ignoring $v='${!v}' from the environment; builds use '${want[$v]}' (scripts/go.sh; MARCH=native for a -march=native build)" >&2
  fi
  export "$v=${want[$v]}"
done
export CGO_ENABLED=1
exec go "$@"
