#!/bin/sh
# Build HAMi-core's libvgpu.so offline, for backend=hami and gpu-check's HAMi items.
#   scripts/build_hami_core.sh <HAMi-core source folder> [output folder, default build/hami-core]
# CUDA headers (cuda.h, nvml.h): $CUDA_HOME/include (default /usr/local/cuda) on a GPU host;
# elsewhere the nvidia-cuda-runtime and nvidia-nvml-dev wheels in $HAMI_DEPS (default
# build/hami-core-deps), which this script unpacks. The library links against gcc-built stub
# libcuda/libnvidia-ml with the real sonames, so no driver is needed to build it: at run
# time the host's libcuda.so.1 and libnvidia-ml.so.1 are loaded.
set -eu

SRC=${1:-}
OUT=${2:-build/hami-core}
DEPS=${HAMI_DEPS:-build/hami-core-deps}
CUDA_WHEELS="nvidia-cuda-runtime==13.0.96 nvidia-nvml-dev==13.0.87"

die() { echo "make hami-core: $*" >&2; exit 2; }

[ -n "$SRC" ] || die "SRC=<HAMi-core source folder> is required (git clone https://github.com/Project-HAMi/HAMi-core)"
[ -f "$SRC/CMakeLists.txt" ] && [ -f "$SRC/src/libvgpu.c" ] \
  || die "$SRC is not a HAMi-core source folder (no CMakeLists.txt and src/libvgpu.c)"
command -v cmake >/dev/null || die "cmake is missing (apt-get install -y cmake)"
command -v gcc >/dev/null || die "gcc is missing (apt-get install -y gcc)"

SRC=$(cd "$SRC" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

cuda_home=${CUDA_HOME:-/usr/local/cuda}
if [ -f "$cuda_home/include/cuda.h" ] && [ -f "$cuda_home/include/nvml.h" ]; then
  echo "hami-core: CUDA headers from $cuda_home/include"
else
  set -- "$DEPS"/nvidia_cuda_runtime-*.whl
  runtime_whl=$1
  set -- "$DEPS"/nvidia_nvml_dev-*.whl
  nvml_whl=$1
  [ -f "$runtime_whl" ] && [ -f "$nvml_whl" ] || die "no CUDA headers: neither $cuda_home/include/{cuda.h,nvml.h} nor the wheels in $DEPS; on a machine with an index: pip download --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 --python-version 3.12 -d $DEPS $CUDA_WHEELS"
  headers="$OUT/cuda-headers"
  rm -rf "$headers"
  python3 -c 'import sys, zipfile
for whl in sys.argv[2:]:
    zipfile.ZipFile(whl).extractall(sys.argv[1])' "$headers" "$runtime_whl" "$nvml_whl"
  cuda_home=$(dirname "$(dirname "$(find "$headers" -name cuda.h -path '*/include/*' | head -n 1)")")
  [ -f "$cuda_home/include/nvml.h" ] || die "the wheels in $DEPS hold no include/cuda.h next to include/nvml.h"
  echo "hami-core: CUDA headers from the wheels $(basename "$runtime_whl") $(basename "$nvml_whl")"
fi

# Stubs only to link: their sonames make the library ask for the driver's real files.
stubs="$OUT/stubs"
mkdir -p "$stubs"
echo 'void vgpu_bench_link_stub(void) {}' > "$stubs/stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/stub.c"
gcc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o "$stubs/libnvidia-ml.so" "$stubs/stub.c"

# The options of HAMi-core's build.sh; Debug as there (a Release build hides every symbol
# but dlsym, so the CUDA hooks would not be found).
CUDA_HOME=$cuda_home cmake -S "$SRC" -B "$OUT/cmake" \
  -DDLSYM_HOOK_ENABLE=1 -DMULTIPROCESS_LIMIT_ENABLE=1 -DHOOK_MEMINFO_ENABLE=1 \
  -DHOOK_NVML_ENABLE=1 -DCMAKE_BUILD_TYPE=Debug -DTEST_DEVICE_ID=0 \
  "-DCMAKE_SHARED_LINKER_FLAGS=-L$stubs" >"$OUT/cmake.log" 2>&1 \
  || { tail -n 20 "$OUT/cmake.log" >&2; die "cmake configure failed; see $OUT/cmake.log"; }
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$OUT/cmake" --target vgpu -j "$jobs" >>"$OUT/cmake.log" 2>&1 \
  || { grep -m 5 -i 'error' "$OUT/cmake.log" >&2 || true; die "the build failed; see $OUT/cmake.log"; }
cp "$OUT/cmake/libvgpu.so" "$OUT/libvgpu.so"
commit=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)
echo "$commit" > "$OUT/SOURCE_COMMIT"
echo "hami-core: built $OUT/libvgpu.so from HAMi-core $commit"
