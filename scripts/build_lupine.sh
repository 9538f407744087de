#!/bin/sh
# Build LUPINE (formerly SCUDA, github kevmo314/scuda), the CUDA driver-API remoting layer,
# offline: its client shims and its server, for backend=vgpu's LUPINE flavor.
#   scripts/build_lupine.sh <LUPINE source folder> [output folder, default build/lupine]
# Writes <out>/client/{libcuda.so.1,libnvidia-ml.so.1} (+ the .so links LUPINE's own images
# make), <out>/server/lupine_driver_server and <out>/BUILD_INFO (key=value lines).
# Needs gcc/g++ (LUPINE's CMakeLists pins /usr/bin/gcc and /usr/bin/g++), cmake, the CUDA
# toolkit's nvcc and cuda.h in $CUDA_HOME (default $CUDA_PATH, else /usr/local/cuda: a
# toolkit, or the nvidia-cuda-nvcc/nvidia-cuda-runtime wheels' nvidia/cu13 folder), nvml.h
# (there, else the nvidia-nvml-dev wheel or a pip --target folder in $LUPINE_DEPS, default
# build/lupine-deps) and nghttp2 (libnghttp2-dev). No driver is needed: the server links
# against a gcc-built stub libcuda.so.1 generated from cuda.h; at run time it loads the
# host driver's. The generated RPC code committed in LUPINE's codegen/ is used as is.
set -eu

SRC=${1:-}
OUT=${2:-build/lupine}
DEPS=${LUPINE_DEPS:-build/lupine-deps}
NVML_WHEEL="nvidia-nvml-dev==13.0.87"

die() { echo "make remoting-layer: $*" >&2; exit 2; }

[ -n "$SRC" ] || die "SRC=<LUPINE source folder> is required (git clone https://github.com/kevmo314/scuda)"
[ -d "$SRC" ] || die "SRC=$SRC is not a folder (want a LUPINE source folder: git clone https://github.com/kevmo314/scuda)"
[ -f "$SRC/CMakeLists.txt" ] && grep -q lupine_driver_server "$SRC/CMakeLists.txt" \
  && [ -f "$SRC/server.cpp" ] && [ -f "$SRC/client.cpp" ] \
  || die "$SRC is not a LUPINE source folder (no CMakeLists.txt with lupine_driver_server, server.cpp and client.cpp)"
for generated in gen_client.cpp gen_server.cpp gen_api.h; do
  [ -f "$SRC/codegen/$generated" ] || die "$SRC/codegen/$generated is missing: this recipe builds the committed generated RPC code and runs no codegen"
done
# Offline: LUPINE's CMakeLists downloads nothing today; refuse a future one that would.
! grep -q -E 'FetchContent|ExternalProject|file\(DOWNLOAD' "$SRC/CMakeLists.txt" \
  || die "$SRC/CMakeLists.txt downloads at configure time (FetchContent/ExternalProject); this offline recipe does not support that source"
command -v cmake >/dev/null || die "cmake is missing (apt-get install -y cmake)"
[ -x /usr/bin/gcc ] && [ -x /usr/bin/g++ ] || die "/usr/bin/gcc and /usr/bin/g++ are missing; LUPINE's CMakeLists uses them (apt-get install -y g++)"
command -v objdump >/dev/null || die "objdump is missing (apt-get install -y binutils)"

cuda_home=${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}
[ -f "$cuda_home/include/cuda.h" ] && [ -x "$cuda_home/bin/nvcc" ] \
  || die "no CUDA toolkit at $cuda_home (want include/cuda.h and bin/nvcc): set CUDA_HOME, or pip install --target <dir> nvidia-cuda-nvcc nvidia-cuda-runtime and set CUDA_HOME=<dir>/nvidia/cu13"
# nvcc's profile links with -L$TOP/lib64; the wheels install lib only.
[ -d "$cuda_home/lib64" ] || die "$cuda_home has no lib64, which nvcc links from (a pip --target install of the NVIDIA wheels has lib only): ln -s lib $cuda_home/lib64"

SRC=$(cd "$SRC" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cuda_home=$(cd "$cuda_home" && pwd)
# A failed build must not leave the previous one's files looking current.
rm -rf "$OUT/client" "$OUT/server" "$OUT/BUILD_INFO"

if [ -f "$cuda_home/include/nvml.h" ]; then
  nvml_include=$cuda_home/include
  nvml_from="$cuda_home/include"
else
  [ -d "$DEPS" ] || die "no nvml.h: neither $cuda_home/include/nvml.h nor $DEPS; on a machine with an index: pip download --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 --python-version 3.12 -d $DEPS $NVML_WHEEL"
  for whl in "$DEPS"/nvidia_nvml_dev-*.whl; do
    [ -f "$whl" ] || continue
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[2]).extractall(sys.argv[1])' "$OUT/nvml-headers" "$whl"
  done
  nvml_h=$(find "$DEPS" "$OUT/nvml-headers" -name nvml.h -path '*/include/*' 2>/dev/null | head -n 1)
  [ -n "$nvml_h" ] || die "no nvml.h: neither $cuda_home/include/nvml.h nor an nvidia-nvml-dev wheel or install in $DEPS; on a machine with an index: pip download --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 --python-version 3.12 -d $DEPS $NVML_WHEEL"
  nvml_include=$(dirname "$nvml_h")
  nvml_from=$nvml_h
fi

printf '#include <nghttp2/nghttp2.h>\nint main(void) { return nghttp2_version(0) == 0; }\n' > "$OUT/nghttp2_probe.c"
/usr/bin/gcc -o "$OUT/nghttp2_probe" "$OUT/nghttp2_probe.c" -lnghttp2 2>/dev/null \
  || die "nghttp2's headers or libnghttp2.so are missing (apt-get install -y libnghttp2-dev)"
rm -f "$OUT/nghttp2_probe" "$OUT/nghttp2_probe.c"

# A link stub for the server: every CUresult entry point of cuda.h, each returning
# CUDA_ERROR_STUB_LIBRARY (34): the names the macros pick (cuMemAlloc_v2) and, with
# __CUDA_API_VERSION_INTERNAL, the older versions the driver still exports (cuCtxCreate_v2),
# which LUPINE's server calls too. Its soname makes the server ask for the host driver's
# libcuda.so.1 at run time.
stubs="$OUT/link-stubs"
mkdir -p "$stubs"
for internal in "" -D__CUDA_API_VERSION_INTERNAL; do
  printf '#include <cuda.h>\n#include <cudaProfiler.h>\n' \
    | /usr/bin/gcc -E -P -x c $internal "-I$cuda_home/include" -
done | tr '\n' ' ' \
  | grep -oE '\bCUresult[[:space:]]+cu[A-Za-z0-9_]+[[:space:]]*\(' \
  | sed -E 's/CUresult[[:space:]]+//; s/[[:space:]]*\(//' | sort -u \
  | sed 's/.*/int &(void) { return 34; }/' > "$stubs/libcuda_stub.c"
[ -s "$stubs/libcuda_stub.c" ] || die "found no CUresult entry points in $cuda_home/include/cuda.h"
/usr/bin/gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda_stub.c"

nvcc_version=$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p')
cuda_api=$(printf '#include <cuda.h>\nCUDA_VERSION\n' | /usr/bin/gcc -E -P -x c "-I$cuda_home/include" - | tail -n 1)
echo "lupine: CUDA $nvcc_version (cuda.h CUDA_VERSION $cuda_api) from $cuda_home; nvml.h from $nvml_from"

started=$(date +%s)
rm -rf "$OUT/cmake"
# As LUPINE's Dockerfile builds it (Release, no codegen), with this script's link stub;
# FETCHCONTENT_FULLY_DISCONNECTED keeps any dependency fetch off the network. RUNPATH
# $ORIGIN: each binary finds the libnghttp2.so.14 copied next to it on a GPU host without one.
cmake -S "$SRC" -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CUDA_COMPILER=$cuda_home/bin/nvcc" "-DCUDAToolkit_ROOT=$cuda_home" \
  "-DCMAKE_CXX_FLAGS=-I$nvml_include" "-DCMAKE_CUDA_FLAGS=-I$nvml_include" \
  "-DCMAKE_EXE_LINKER_FLAGS=-L$stubs" -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
  '-DCMAKE_BUILD_RPATH=$ORIGIN' >"$OUT/cmake.log" 2>&1 \
  || { tail -n 20 "$OUT/cmake.log" >&2; die "cmake configure failed; see $OUT/cmake.log"; }
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$OUT/cmake" --target lupine_driver lupine_nvml lupine_driver_server -j "$jobs" >>"$OUT/cmake.log" 2>&1 \
  || { grep -m 5 -i 'error' "$OUT/cmake.log" >&2 || true; die "the build failed; see $OUT/cmake.log"; }
seconds=$(($(date +%s) - started))

mkdir -p "$OUT/client" "$OUT/server"
cp -L "$OUT/cmake/libcuda.so.1" "$OUT/cmake/libnvidia-ml.so.1" "$OUT/client/"
ln -sf libcuda.so.1 "$OUT/client/libcuda.so"
ln -sf libnvidia-ml.so.1 "$OUT/client/libnvidia-ml.so"
cp "$OUT/cmake/lupine_driver_server" "$OUT/server/"
# The only run-time dependency a GPU host may lack; the shims' folder comes first on the
# worker's LD_LIBRARY_PATH anyway.
nghttp2=$(/usr/bin/gcc -print-file-name=libnghttp2.so.14)
[ -f "$nghttp2" ] || die "no libnghttp2.so.14 next to libnghttp2.so (apt-get install -y libnghttp2-14)"
cp -L "$nghttp2" "$OUT/client/libnghttp2.so.14"
cp -L "$nghttp2" "$OUT/server/libnghttp2.so.14"
glibc=$(objdump -T "$OUT/client/libcuda.so.1" "$OUT/client/libnvidia-ml.so.1" "$OUT/server/lupine_driver_server" \
  | grep -oE 'GLIBC_[0-9.]+' | sort -V -u | tail -n 1)
glibcxx=$(objdump -T "$OUT/client/libcuda.so.1" "$OUT/client/libnvidia-ml.so.1" "$OUT/server/lupine_driver_server" \
  | grep -oE 'GLIBCXX_[0-9.]+' | sort -V -u | tail -n 1)

commit=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)
cat >"$OUT/BUILD_INFO" <<EOF
source=https://github.com/kevmo314/scuda
source_commit=$commit
source_dir=$SRC
cuda_version=$nvcc_version
cuda_h_version=$cuda_api
cuda_home=$cuda_home
nvml_header=$nvml_from
build_type=Release
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_seconds=$seconds
client_dir=client
client_libcuda=client/libcuda.so.1
client_libnvml=client/libnvidia-ml.so.1
server=server/lupine_driver_server
server_port_env=LUPINE_PORT
server_default_port=14833
needs_glibc=$glibc
needs_libstdcxx=$glibcxx
EOF
echo "lupine: built $OUT/client/libcuda.so.1, $OUT/client/libnvidia-ml.so.1 and $OUT/server/lupine_driver_server from LUPINE $commit in ${seconds} s"
