#!/usr/bin/env bash
# Packs the release archive: dist/syn4pse-<os>-<arch>.tar.gz holding syn4pse/ with the binary,
# lib/ (libggml-base, every CPU variant, the GPU backends built, and the CUDA runtime libraries
# they need), the default syn4pse.toml, README.md and LICENSE; and its .sha256 (sha256sum -c
# format). The binary finds lib/ beside itself, so the unpacked folder runs from anywhere.
#
#   scripts/dist.sh            after `task build` (the task runs both)
set -euo pipefail
cd "$(dirname "$0")/.."

os=$(go env GOOS)
arch=$(go env GOARCH)
name="syn4pse-$os-$arch"
[ -x bin/syn4pse ] || { echo "bin/syn4pse missing: run 'task build' first" >&2; exit 1; }
ls bin/lib/libggml-cpu* >/dev/null 2>&1 || { echo "bin/lib has no CPU backend: run 'task build-third-party'" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/syn4pse/lib" dist
# Relinking without symbols reuses every compiled package (no llama.cpp rebuild); -trimpath
# would change the cgo action IDs and compile it all again.
bash scripts/go.sh build -tags "${TAGS:-}" -ldflags='-s -w' -o "$stage/syn4pse/syn4pse" ./cmd/syn4pse
cp -a bin/lib/. "$stage/syn4pse/lib/"
cp syn4pse.toml README.md LICENSE "$stage/syn4pse/"

# GPU backends need their vendor's runtime libraries (cudart, cublas) but not the driver, which
# comes with the machine (or the NVIDIA container toolkit).
for backend in "$stage"/syn4pse/lib/libggml-cuda*.so; do
  [ -e "$backend" ] || continue
  ldd "$backend" | awk '/libcudart|libcublas/ { print $3 }' | while read -r dep; do
    [ -f "$dep" ] && cp -L "$dep" "$stage/syn4pse/lib/"
  done
done

tmp="dist/.$name.tar.gz.tmp"
tar -C "$stage" -czf "$tmp" syn4pse
sync "$tmp" 2>/dev/null || true
mv -f "$tmp" "dist/$name.tar.gz"
(cd dist && sha256sum "$name.tar.gz" >".$name.tar.gz.sha256.tmp" && mv -f ".$name.tar.gz.sha256.tmp" "$name.tar.gz.sha256")
echo "dist/$name.tar.gz ($(du -h "dist/$name.tar.gz" | cut -f1)), sha256 $(cut -d' ' -f1 "dist/$name.tar.gz.sha256")"
