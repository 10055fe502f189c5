#!/usr/bin/env bash
# Builds the native ggml backends the node loads at run time, with CMake (native/CMakeLists.txt),
# from the sources vendored in the Go module github.com/ollama/ollama, into one library folder
# (default bin/lib, the one beside bin/syn4pse).
#
#   scripts/build-native.sh cpu [LIBDIR]      libggml-base + every CPU variant for this architecture
#   scripts/build-native.sh cuda [LIBDIR]     libggml-cuda   (CUDA_ARCHITECTURES: "native" default
#                                             where a GPU is present, else 75;80;86;89;90)
#   scripts/build-native.sh vulkan [LIBDIR]   libggml-vulkan (needs Vulkan headers >= 1.3.275, glslc)
#   scripts/build-native.sh metal [LIBDIR]    libggml-metal  (macOS)
#
# Builds are incremental (build/native/<backend>) and cached by ccache when it is installed, so a
# second run, or CI on the same machine, takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-cpu}
libdir=${2:-bin/lib}
mkdir -p "$libdir"
libdir=$(cd "$libdir" && pwd)

module=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama 2>/dev/null || true)
if [ -z "$module" ]; then
  go mod download github.com/ollama/ollama
  module=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
fi
src="$module/ml/backend/ggml/ggml/src"

jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi

# configure_and_build DIR TARGET [CMAKE ARGS...]
configure_and_build() {
  local dir=$1 target=$2
  shift 2
  cmake -S native -B "$dir" "${generator[@]}" "${launcher[@]}" -DSYN4PSE_GGML_SRC="$src" "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log" >&2; echo "cmake configure failed ($dir)" >&2; exit 1; }
  echo "building $target in $dir (log: $dir.build.log)"
  cmake --build "$dir" --target "$target" -j "$jobs" >"$dir.build.log" 2>&1 ||
    { grep -v 'warning:\|note:' "$dir.build.log" | tail -40 >&2; echo "build failed ($dir; full log $dir.build.log)" >&2; exit 1; }
}

# install_libs DIR PATTERN...: copies the built libraries (and the soname links) into libdir,
# each through a temporary name and a rename, so a running node never sees half a file.
install_libs() {
  local dir=$1
  shift
  local pattern f
  for pattern in "$@"; do
    for f in "$dir"/lib/$pattern; do
      [ -e "$f" ] || continue
      if [ -L "$f" ]; then
        ln -sfn "$(readlink "$f")" "$libdir/$(basename "$f")"
      else
        cp "$f" "$libdir/.$(basename "$f").tmp"
        mv -f "$libdir/.$(basename "$f").tmp" "$libdir/$(basename "$f")"
      fi
    done
  done
}

# CROSS=aarch64-linux-gnu builds the arm64 libraries with that cross compiler (to check the
# arm64 build from an x86-64 machine); the default builds for this machine.
cross=()
target_arch=$(uname -m)
if [ -n "${CROSS:-}" ]; then
  target_arch=${CROSS%%-*}
  cross=(-DCMAKE_SYSTEM_NAME=Linux "-DCMAKE_SYSTEM_PROCESSOR=$target_arch" "-DCMAKE_C_COMPILER=$CROSS-gcc" "-DCMAKE_CXX_COMPILER=$CROSS-g++")
fi
cc=${CROSS:+$CROSS-}gcc

# unsupported_march VARIANT prints the -march value VARIANT needs that the compiler rejects, or
# nothing. Only arm64's newest variants outrun the compilers of current distributions.
unsupported_march() {
  local march=""
  case "$1" in
  armv9.2_*) march="armv9.2-a+sme" ;;
  *) return 0 ;;
  esac
  echo 'int main(void){return 0;}' | $cc "-march=$march" -x c -c -o /dev/null - 2>/dev/null || echo "$march"
}

bd=build/native${CROSS:+/$CROSS}
mkdir -p "$bd"
case "$backend" in
cpu)
  configure_and_build $bd/cpu ggml-base -DSYN4PSE_BACKEND=cpu "${cross[@]}"
  # Each variant ggml defines for this architecture, one target at a time: a compiler too old
  # for a variant's instruction set (GCC 12, Debian 12's, lacks armv9.2-a+sme) skips that variant
  # instead of failing the build; every other failure stops it.
  variants=$(cmake --build $bd/cpu --target help | grep -o 'ggml-cpu-[A-Za-z0-9_.]*' | grep -v '\.so$' | sort -u)
  for target in $variants; do
    if [ -n "$(unsupported_march "${target#ggml-cpu-}")" ]; then
      echo "skipping CPU variant ${target#ggml-cpu-}: the compiler does not know $(unsupported_march "${target#ggml-cpu-}")" >&2
      continue
    fi
    echo "building $target"
    cmake --build $bd/cpu --target "$target" -j "$jobs" >>$bd/cpu.build.log 2>&1 ||
      { grep -v 'warning:\|note:' $bd/cpu.build.log | tail -40 >&2; echo "build of $target failed (full log $bd/cpu.build.log)" >&2; exit 1; }
  done
  install_libs $bd/cpu 'libggml-base.so*' 'libggml-base.dylib' 'libggml-cpu*.so' 'libggml-cpu*.dylib'
  # Variants ggml's own list lacks, one build each (x86-64 only; the compiler must know AMX).
  if [ "$target_arch" = x86_64 ]; then
    for variant in zen4 sapphirerapids; do
      if [ $variant = sapphirerapids ] && ! echo 'int main(void){return 0;}' | ${CC:-cc} -mamx-int8 -x c -o /dev/null - 2>/dev/null; then
        echo "skipping the sapphirerapids (AMX) variant: ${CC:-cc} does not know -mamx-int8" >&2
        continue
      fi
      configure_and_build "$bd/cpu-$variant" ggml-cpu -DSYN4PSE_BACKEND=cpu -DSYN4PSE_CPU_VARIANT=$variant "${cross[@]}"
      install_libs "$bd/cpu-$variant" "libggml-cpu-$variant.so"
    done
  fi
  ;;
cuda)
  if ! command -v nvcc >/dev/null; then
    echo "nvcc not found: run 'task install-cuda' (Debian: nvidia-cuda-toolkit from non-free)" >&2
    exit 1
  fi
  archs=${CUDA_ARCHITECTURES:-}
  if [ -z "$archs" ]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then archs=native; else archs="75;80;86;89;90"; fi
  fi
  cuda_args=(-DSYN4PSE_BACKEND=cuda "-DCMAKE_CUDA_ARCHITECTURES=$archs")
  # nvcc 11.8 supports g++ up to 11; Debian 12's default is 12.
  if [ -n "${CUDAHOSTCXX:-}" ]; then
    cuda_args+=("-DCMAKE_CUDA_HOST_COMPILER=$CUDAHOSTCXX")
  elif command -v g++-11 >/dev/null && nvcc --version | grep -q 'release 11\.'; then
    cuda_args+=(-DCMAKE_CUDA_HOST_COMPILER=g++-11)
  fi
  configure_and_build $bd/cuda ggml-cuda "${cuda_args[@]}"
  install_libs $bd/cuda 'libggml-cuda.so'
  ;;
vulkan | metal)
  configure_and_build "$bd/$backend" "ggml-$backend" "-DSYN4PSE_BACKEND=$backend"
  install_libs "$bd/$backend" "libggml-$backend.so" "libggml-$backend.dylib"
  ;;
*)
  echo "usage: $0 cpu|cuda|vulkan|metal [LIBDIR]" >&2
  exit 2
  ;;
esac
echo "native $backend backend in $libdir:"
ls -l "$libdir"
