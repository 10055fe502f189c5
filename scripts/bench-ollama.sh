#!/usr/bin/env bash
# Benchmarks our server against Ollama's on this machine, same model, same CPU kernels, same run:
#
#   syn4pse    bin/syn4pse with the bench model, parallel 8
#   ollama     Ollama's server with its defaults (one request at a time)
#   ollama-p8  Ollama's server with OLLAMA_NUM_PARALLEL=8 (the streams of scenario (b))
#
# Ollama's server is built from the Go module github.com/ollama/ollama at the version our go.mod
# requires (tools/ollama/go.mod, so the product's go.mod stays clean), through scripts/go.sh
# (the same cgo flags), into build/ollama/bin; build/ollama/lib/ollama links our bin/lib CPU
# variant libraries, which Ollama loads as its own, so both servers run the same ggml kernels.
# The model is tinygguf's bench model (random F16 weights); Ollama imports it with `ollama
# create`. cmd/loadbench drives both through /v1/chat/completions with streaming, alternating
# the servers scenario by scenario, and prints the table. Every server listens on 127.0.0.1 and
# is stopped on exit; everything but the builds and the model lives in a temporary folder.
#
# BENCH_SCENARIOS=embed benchmarks embeddings instead (task bench-ollama-embed): tinygguf's bert
# bench model, our /v1/embeddings against Ollama's /api/embed, BENCH_INPUTS short inputs in one
# request and in one request each (cmd/embedbench).
#
#   scripts/bench-ollama.sh [LIBDIR]          (task bench-ollama; LIBDIR defaults to bin/lib)
#
# Sizes (environment): ROUNDS=3, BENCH_CTX=4096 (context per sequence, both servers),
# BENCH_THREADS=<cores>, BENCH_PROMPT_TOKENS=256, BENCH_GEN_TOKENS=128, BENCH_STREAMS=8,
# BENCH_STREAM_PROMPT_TOKENS=64, BENCH_LONG_PROMPT_TOKENS=2000, BENCH_RUNNING=4,
# BENCH_RUNNING_TOKENS=1024; embed: BENCH_INPUTS=256, BENCH_CTX=512.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
libdir=$(cd "${1:-bin/lib}" && pwd)
rounds=${ROUNDS:-3}
scenarios=${BENCH_SCENARIOS:-chat}
case $scenarios in
chat) arch=llama driver=loadbench modality=llm ctx=${BENCH_CTX:-4096} ;;
embed) arch=bert driver=embedbench modality=embeddings ctx=${BENCH_CTX:-512} ;;
*) echo "BENCH_SCENARIOS=$scenarios: want chat or embed" >&2; exit 2 ;;
esac
threads=${BENCH_THREADS:-$(getconf _NPROCESSORS_ONLN)}
streams=${BENCH_STREAMS:-8}
parallel_name=ollama-p$streams

[ -x bin/syn4pse ] || { echo "bin/syn4pse is missing: run task build" >&2; exit 1; }
ls "$libdir"/libggml-cpu-*.so >/dev/null 2>&1 || { echo "no CPU variant libraries in $libdir: run task build" >&2; exit 1; }
# Ollama reads OLLAMA_* settings: start from its defaults, whatever this shell has set.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^OLLAMA_' || true)

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-ollama.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # The servers' logs outlive the run, for a look at what went wrong or what ran.
  rm -rf build/bench/logs
  mkdir -p build/bench/logs
  cp "$work"/*.log build/bench/logs/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ollama_version GOMOD: the version of github.com/ollama/ollama that GOMOD requires.
ollama_version() { sed -n 's/^[[:space:]]*github.com\/ollama\/ollama \(v[^ ]*\).*/\1/p' "$1"; }
version=$(ollama_version go.mod)
if [ "$(ollama_version tools/ollama/go.mod)" != "$version" ]; then
  echo "tools/ollama/go.mod requires github.com/ollama/ollama $(ollama_version tools/ollama/go.mod), go.mod $version; align it:" >&2
  echo "  go get -modfile=tools/ollama/go.mod -tool github.com/ollama/ollama@$version" >&2
  exit 1
fi
echo "== building Ollama's server (github.com/ollama/ollama $version) into build/ollama"
echo "   (the first build compiles its cgo ggml, llama.cpp and sqlite: 10+ minutes on 2 cores)"
start=$SECONDS
bash scripts/go.sh build -modfile=tools/ollama/go.mod -o build/ollama/bin/ollama github.com/ollama/ollama
echo "   took $((SECONDS - start))s"
# Ollama loads the ggml backends in ../lib/ollama beside its binary: ours, linked.
rm -rf build/ollama/lib/ollama.tmp
mkdir -p build/ollama/lib/ollama.tmp
for f in "$libdir"/libggml-base.so* "$libdir"/libggml-cpu-*.so; do ln -s "$f" build/ollama/lib/ollama.tmp/; done
rm -rf build/ollama/lib/ollama
mv build/ollama/lib/ollama.tmp build/ollama/lib/ollama
bash scripts/go.sh build -o "$work/$driver" "./cmd/$driver"

model=$root/build/bench/bench-$arch.gguf
mkdir -p build/bench
bash scripts/go.sh run ./cmd/tinygguf -arch "$arch" -size bench -o "$model"

# free_port prints a TCP port nothing on 127.0.0.1 listens on and that this script has not used.
used=" "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    case $used in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used="$used$p "
      echo "$p"
      return
    fi
  done
}

# wait_http URL NAME LOG: waits up to 5 minutes for URL to answer 200, the server still running.
wait_http() {
  local url=$1 name=$2 log=$3 pid=${pids[-1]}
  for _ in $(seq 600); do
    if curl -sf -o /dev/null "$url"; then return; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited while starting; its log ($log):" >&2
      tail -30 "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "$name did not answer $url within 5 minutes; its log ($log):" >&2
  tail -30 "$log" >&2
  exit 1
}

echo "== starting syn4pse (parallel $streams, context $ctx per sequence, $threads threads)"
ours=$(free_port)
cat >"$work/syn4pse.toml" <<EOF
data_dir = "$work/syn4pse-data"

[server]
host = "127.0.0.1"
http_port = $ours
grpc_port = $(free_port)

[p2p]
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false
nat = false

[models]
keep_alive = "-1"

[models.bench]
modality = "$modality"
path = "$model"
context_length = $ctx
parallel = $streams
threads = $threads
EOF
bin/syn4pse serve --config "$work/syn4pse.toml" >"$work/syn4pse.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$ours/healthz" syn4pse "$work/syn4pse.log"

# start_ollama NAME PORT [ENV...]: an Ollama server on PORT sharing one model store.
start_ollama() {
  local name=$1 port=$2
  shift 2
  env HOME="$work/home" OLLAMA_HOST="127.0.0.1:$port" OLLAMA_MODELS="$work/ollama-models" \
    OLLAMA_KEEP_ALIVE=-1 "$@" build/ollama/bin/ollama serve >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/api/version" "$name" "$work/$name.log"
}
echo "== starting Ollama: defaults, and OLLAMA_NUM_PARALLEL=$streams"
mkdir -p "$work/home"
ollama_default=$(free_port)
ollama_parallel=$(free_port)
start_ollama ollama "$ollama_default"
start_ollama "$parallel_name" "$ollama_parallel" OLLAMA_NUM_PARALLEL="$streams"

# The same context per sequence (Ollama multiplies num_ctx by its parallel count), the same
# threads, and no repeat penalty (Ollama's default is 1.1, ours none); requests ask for greedy
# sampling.
cat >"$work/Modelfile" <<EOF
FROM $model
PARAMETER num_ctx $ctx
PARAMETER num_thread $threads
PARAMETER repeat_penalty 1
EOF
HOME="$work/home" OLLAMA_HOST="127.0.0.1:$ollama_default" build/ollama/bin/ollama create bench -f "$work/Modelfile" >"$work/create.log" 2>&1 ||
  { cat "$work/create.log" >&2; exit 1; }

echo "== running the $scenarios load (rounds: $rounds; load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
start=$SECONDS
if [ "$scenarios" = embed ]; then
  "$work/embedbench" -model bench -rounds "$rounds" -inputs "${BENCH_INPUTS:-256}" \
    -target "syn4pse=http://127.0.0.1:$ours/v1/embeddings" \
    -target "ollama=http://127.0.0.1:$ollama_default/api/embed" \
    -target "$parallel_name=http://127.0.0.1:$ollama_parallel/api/embed" >"$work/table.txt" &
else
  "$work/loadbench" -model bench -rounds "$rounds" -streams "$streams" \
    -prompt-tokens "${BENCH_PROMPT_TOKENS:-256}" -gen-tokens "${BENCH_GEN_TOKENS:-128}" \
    -stream-prompt-tokens "${BENCH_STREAM_PROMPT_TOKENS:-64}" -long-prompt-tokens "${BENCH_LONG_PROMPT_TOKENS:-2000}" \
    -running "${BENCH_RUNNING:-4}" -running-tokens "${BENCH_RUNNING_TOKENS:-1024}" \
    -target "syn4pse=http://127.0.0.1:$ours" \
    -target "ollama=http://127.0.0.1:$ollama_default" \
    -target "$parallel_name=http://127.0.0.1:$ollama_parallel" \
    -agg-goal ollama=2 -agg-goal "$parallel_name=1.2" >"$work/table.txt" &
fi
# In the background so that a signal reaches the trap at once, not when the load is done.
pids+=($!)
wait "${pids[-1]}"
echo "   took $((SECONDS - start))s; load average after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes the figures noisy)"

# What each server ran, from its log.
echo
case $scenarios in
chat) echo "model: tinygguf -size bench (llama architecture, F16, random weights), context $ctx per sequence, $threads threads, temperature 0" ;;
embed) echo "model: tinygguf -arch bert -size bench (12 layers, n_embd 768, F16, random weights), Ollama num_ctx $ctx, $threads threads" ;;
esac
ours_cpu=$(grep -m1 -o 'library=[^ ]*' "$work/syn4pse.log" || true)
printf '%-10s CPU %s\n' "syn4pse:" "${ours_cpu#library=}"
for name in ollama "$parallel_name"; do
  # The runner that loaded the model (another, without --model, only probes the devices).
  cmd=$(grep -m1 'msg="starting runner".*--model' "$work/$name.log" || true)
  case $cmd in
  "") runner="runner not logged" ;;
  *--ollama-engine*) runner="Ollama's Go engine (ollamarunner)" ;;
  *) runner="llama.cpp runner (llamarunner)" ;;
  esac
  backend=$(grep -m1 -o 'loaded CPU backend from [^ ]*' "$work/$name.log" || true)
  printf '%-10s %s, CPU %s\n' "$name:" "$runner" "${backend#loaded CPU backend from }"
done
echo "(logs: build/bench/logs)"
cat "$work/table.txt"
