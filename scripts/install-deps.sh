#!/usr/bin/env bash
# Installs what building SYN4PSE needs on Debian/Ubuntu (g++, CMake, ninja, ccache, protoc and
# two header packages; iproute2 for the chaos tests). Safe to run again: it does only what is
# missing. The binding's Go module (github.com/ollama/ollama) ships llama.cpp without its vendor/
# headers: nlohmann/json and stb come from Debian, miniaudio.h from the Go module
# github.com/gen2brain/malgo (same 0.11 series).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

need=()
[ -f /usr/include/nlohmann/json_fwd.hpp ] || need+=(nlohmann-json3-dev)
[ -f /usr/include/stb/stb_image.h ] || need+=(libstb-dev)
command -v g++ >/dev/null || need+=(g++)
command -v protoc >/dev/null || need+=(protobuf-compiler)
# The native backends (CPU variants, GPU backends) are built with CMake; ninja and ccache make
# rebuilds take seconds.
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v ccache >/dev/null || need+=(ccache)
# Speech engines: PocketSphinx (speech-to-text) and flite (text-to-speech) are linked through cgo
# (BSD licences); espeak-ng is GPL and runs only as a separate process. pocketsphinx-en-us holds
# the real English weights, pocketsphinx-testdata human recordings with their transcripts.
[ -f /usr/include/pocketsphinx/pocketsphinx.h ] || need+=(libpocketsphinx-dev libsphinxbase-dev)
[ -d /usr/share/pocketsphinx/model/en-us/en-us ] || need+=(pocketsphinx-en-us)
[ -d /usr/share/pocketsphinx/test/data/cards ] || need+=(pocketsphinx-testdata)
[ -f /usr/include/flite/flite.h ] || need+=(flite1-dev)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
# mp3 and opus speech output pipe through these encoders (separate processes); flac checks the
# FLAC we write in tests.
command -v lame >/dev/null || need+=(lame)
command -v opusenc >/dev/null || need+=(opus-tools)
command -v flac >/dev/null || need+=(flac)
# The chaos tests (internal/netlab, cmd/syn4pse chaos_test.go) build network namespaces with ip.
command -v ip >/dev/null || need+=(iproute2)
# The dashboard's browser tests (node/httpapi/dashboard) drive headless Chromium over CDP.
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

malgo_version=v0.11.24
header=/usr/local/include/miniaudio/miniaudio.h
if [ ! -f "$header" ]; then
  dir=$(cd tools && go mod download -json "github.com/gen2brain/malgo@${malgo_version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  $sudo install -D -m 0644 "$dir/miniaudio.h" "$header"
  echo "installed $header"
fi
go mod download
