#!/usr/bin/env bash
# Starts the release archive the way the Docker image starts it, on the host (no Docker engine
# runs where CI does): unpacked into a folder that stands for /app, with a mounted-style
# /app/syn4pse.toml declaring a model by relative path, SYN4PSE_* variables as `docker run -e`
# gives them (an API key among them, as the image needs one on 0.0.0.0), no library path (the
# binary must find lib/ beside itself), then checks the image's HEALTHCHECK command, the CPU
# variant chosen, a generation, and that a client without the key is refused. Traffic stays on
# 127.0.0.1.
#
#   scripts/check-dist.sh [dist/syn4pse-<os>-<arch>.tar.gz]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
archive=${1:-dist/syn4pse-$(go env GOOS)-$(go env GOARCH).tar.gz}
[ -f "$archive" ] || { echo "check-dist: $archive missing: run 'task dist'" >&2; exit 1; }
(cd "$(dirname "$archive")" && sha256sum -c --quiet "$(basename "$archive").sha256")

work=$(mktemp -d)
pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
tar -C "$work" -xzf "$archive"
app="$work/syn4pse"
mkdir -p "$app/models" "$app/data"
(cd "$root" && go run ./cmd/tinygguf -arch llama -o "$app/models/tiny.gguf" >/dev/null)

# port prints a loopback port nothing listens on (a connection to it is refused).
port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && [ "$p" != "${1:-}" ]; then
      echo "$p"
      return
    fi
  done
}
http_port=$(port)
grpc_port=$(port "$http_port")
cat >"$app/syn4pse.toml" <<EOF
[server]
host = "0.0.0.0"
http_port = 8080
grpc_port = 50051

[backends.llm.llama_cpp]
enabled = true
engine = "llama_cpp"
model = "models/tiny.gguf"
context_length = 512
EOF

api_key="sk-check-dist-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

# As `docker run -e SYN4PSE_...` with WORKDIR /app; nothing of the build's environment leaks in.
# The host stays loopback here (the image's is 0.0.0.0) so that nothing outside can reach it.
image_env=(env -i "PATH=/usr/bin:/bin" "HOME=$app" "SYN4PSE_DATA_DIR=$app/data"
  "SYN4PSE_SERVER_HTTP_PORT=$http_port" "SYN4PSE_SERVER_GRPC_PORT=$grpc_port" "SYN4PSE_P2P_LISTEN=/ip4/127.0.0.1/tcp/0"
  "SYN4PSE_P2P_MDNS=false")
node_env=("${image_env[@]}" "SYN4PSE_SERVER_HOST=127.0.0.1" "SYN4PSE_API_KEYS=$api_key")

# The image as shipped (0.0.0.0) without a key must refuse to start, before binding anything,
# with exit code 2 and both fixes named.
refusal=$(cd "$app" && timeout 30 "${image_env[@]}" "SYN4PSE_SERVER_HOST=0.0.0.0" "$app/syn4pse" serve 2>&1) && refused=0 || refused=$?

(cd "$app" && exec "${node_env[@]}" "$app/syn4pse" serve >"$work/serve.log" 2>&1) &
pid=$!

passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "check-dist: FAIL $what" >&2
  fi
}

healthy() {
  local i
  for i in $(seq 120); do
    if (cd "$app" && "${node_env[@]}" "$app/syn4pse" health >/dev/null 2>&1); then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}
check "health (the image's HEALTHCHECK) answers serving" healthy
refuses() { [ "$refused" -eq 2 ] && grep -q 'SYN4PSE_API_KEYS' <<<"$refusal" && grep -q 'allow_unauthenticated = true' <<<"$refusal"; }
check "the image's 0.0.0.0 without a key refuses to start, naming both fixes" refuses

# From another directory, as a client: the binary runs from anywhere.
status=$(cd / && "$app/syn4pse" status --addr "127.0.0.1:$grpc_port" --api-key "$api_key" 2>&1 || true)
variant_ok() { grep -q 'cpu code  .* (variant library chosen for this CPU)' <<<"$status" && ! grep -q 'cpu code  builtin' <<<"$status"; }
check "status reports a CPU variant library found beside the binary" variant_ok
model_ok() { grep -q '1 model(s) ready' <<<"$status"; }
check "the model declared in /app/syn4pse.toml by relative path is ready" model_ok
generates() {
  local out
  out=$(cd / && SYN4PSE_API_KEY="$api_key" "$app/syn4pse" run tiny --addr "127.0.0.1:$grpc_port" --max-tokens 8 --seed 1 "Hello") && [ -n "$out" ]
}
check "generation through the unpacked binary" generates
keyless_refused() {
  local out
  out=$(cd / && env -u SYN4PSE_API_KEY "$app/syn4pse" models list --addr "127.0.0.1:$grpc_port" 2>&1) && return 1
  grep -q 'missing API key' <<<"$out"
}
check "a client without the key is refused" keyless_refused
keys_not_logged() { ! grep -qF "$api_key" "$work/serve.log"; }
check "the key is not in the node's log" keys_not_logged

if [ "$failed" -gt 0 ]; then
  echo "--- refusal (exit $refused):"
  echo "$refusal"
  echo "--- status:"
  echo "$status"
  echo "--- serve log:"
  tail -40 "$work/serve.log"
fi
echo "check-dist: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
