#!/usr/bin/env bash
# Installs the CUDA toolkit that builds the CUDA backend: on Debian 12, nvidia-cuda-toolkit 11.8
# from the non-free component (added to the apt sources the machine already uses when they list
# only main) and g++-11, the newest host compiler nvcc 11.8 accepts. No GPU or driver is needed
# to compile. Elsewhere, install a CUDA toolkit yourself and put nvcc on PATH. Safe to run again.
set -euo pipefail

if command -v nvcc >/dev/null; then
  nvcc --version | tail -1
  exit 0
fi
if [ -d /usr/local/cuda/bin ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "nvcc is in /usr/local/cuda/bin: add it to PATH" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "no nvcc and no apt-get: install the CUDA toolkit (11.8 or newer) and put nvcc on PATH" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

# Enable contrib and non-free beside main in the existing sources (deb822 or one-line format).
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  if grep -q '^Components:.*\bmain\b' "$f" && ! grep -q '^Components:.*\bnon-free\b' "$f"; then
    $sudo sed -i -E '/^Components:/ { /non-free/! s/\bmain\b/main contrib non-free/ }' "$f"
    echo "enabled contrib and non-free in $f"
  fi
done
if [ -f /etc/apt/sources.list ] && grep -qE '^deb .* main' /etc/apt/sources.list && ! grep -qE '^deb .*non-free' /etc/apt/sources.list; then
  $sudo sed -i -E '/^deb / { /non-free/! s/ main( |$)/ main contrib non-free\1/ }' /etc/apt/sources.list
  echo "enabled contrib and non-free in /etc/apt/sources.list"
fi

$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit g++-11
nvcc --version | tail -1
