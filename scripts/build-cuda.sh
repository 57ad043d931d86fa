#!/usr/bin/env bash
# Builds the CUDA `sf3d` binary on a machine with no CUDA toolkit and no GPU (the dev machines), using NVIDIA's
# CUDA 13.2 compiler wheels from PyPI. The result runs on a GPU host that has an NVIDIA driver for CUDA 13 and the
# CUDA math libraries (cuBLAS, cuRAND, NVRTC, the runtime) — nothing else: no crates, no network.
#
#   scripts/build-cuda.sh                 # H100/H200 (compute capability 90)
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # A100; 89 for L4/RTX 40xx
#
# Output: $SF3D_CUDA_TARGET/release/sf3d (default ~/.cache/sf3d-studio/target-cuda), stripped; its size is printed.
#
# How it works, and why:
# * The wheels `nvidia-cuda-nvcc`, `-crt`, `-nvvm`, `-cccl`, `-runtime`, `-nvrtc`, `nvidia-cublas`,
#   `nvidia-curand` (pinned to 13.2 so pip does not mix in 13.5 headers) give `nvcc`, `cicc`, the headers and the
#   versioned libraries under `site-packages/nvidia/cu13`. The cu12 wheels ship no nvcc, so this build needs the cu13 set.
# * The linker wants unversioned names (`libcudart.so`, …): we make a folder of symlinks and put it on
#   LIBRARY_PATH. The binary then records the SONAMEs (`libcudart.so.13`, `libcublas.so.13`, …) and the GPU
#   host's dynamic loader finds them the usual way (ld.so.cache, LD_LIBRARY_PATH).
# * candle enables cudarc's `dynamic-linking`, which links `-lcuda`, the driver library that no wheel ships. We
#   build a link stub `libcuda.so` whose SONAME is `libcuda.so.1`, exporting every `cu*` entry point cudarc
#   declares; at run time the host driver's real `libcuda.so.1` is loaded instead (the stub is never shipped).
# * candle-kernels always compiles its MoE/GGUF kernels too (15 heavy files into libmoe.a). Measured on 2 cores from a fresh machine, wheels included: 13.5 min for the whole cold build. The
#   build is cached in the CUDA target dir, so only the first build pays for it; run it in the background.
set -euo pipefail

CAP=${CUDA_COMPUTE_CAP:-90}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sf3d-studio
VENV=$CACHE/cuda13-venv
LINKS=$CACHE/cuda13-links
TARGET=${SF3D_CUDA_TARGET:-$CACHE/target-cuda}
mkdir -p "$CACHE" "$LINKS"

echo "== CUDA 13.2 compiler wheels (venv $VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "nvidia-cuda-nvcc==13.2.*" "nvidia-cuda-runtime==13.2.*" "nvidia-cuda-cccl==13.2.*" "nvidia-cuda-crt==13.2.*" \
    "nvidia-nvvm==13.2.*" "nvidia-cuda-nvrtc==13.2.*" "nvidia-cublas==13.*" "nvidia-curand==10.*"
CU13=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[ -x "$CU13/bin/nvcc" ] || { echo "no nvcc in $CU13/bin" >&2; exit 1; }
"$CU13/bin/nvcc" --version | tail -2

echo "== unversioned library links in $LINKS"
for lib in cudart cublas cublasLt curand nvrtc; do
    real=$(ls "$CU13"/lib/lib"$lib".so.* 2>/dev/null | sort | head -1)
    [ -n "$real" ] || { echo "missing lib$lib in $CU13/lib" >&2; exit 1; }
    ln -sf "$real" "$LINKS/lib$lib.so"
done

echo "== libcuda.so link stub (SONAME libcuda.so.1)"
# (`|| true`: on a fresh machine cudarc is not unpacked yet, and ls failing must not end the script under pipefail)
CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort | tail -1 || true)
if [ -z "$CUDARC" ]; then
    (cd "$ROOT" && cargo fetch --quiet)
    CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort | tail -1 || true)
    [ -n "$CUDARC" ] || { echo "cudarc 0.19 sources not found under ${CARGO_HOME:-$HOME/.cargo}/registry/src" >&2; exit 1; }
fi
grep -rhoE '\bcu[A-Z][A-Za-z0-9_]*\b' "$CUDARC/src/driver/sys" | sort -u > "$LINKS/cuda-symbols.txt"
{
    echo "/* Link-time stand-in for the NVIDIA driver library; never loaded at run time (SONAME libcuda.so.1). */"
    while read -r sym; do echo "void $sym(void) {}"; done < "$LINKS/cuda-symbols.txt"
} > "$LINKS/libcuda_stub.c"
cc -shared -fPIC -o "$LINKS/libcuda.so" -Wl,-soname,libcuda.so.1 "$LINKS/libcuda_stub.c"
echo "   $(wc -l < "$LINKS/cuda-symbols.txt") driver entry points"

echo "== cargo build --release --features cuda (compute capability $CAP; target dir $TARGET)"
export PATH="$CU13/bin:$PATH" CUDA_HOME="$CU13" NVCC="$CU13/bin/nvcc" CUDA_COMPUTE_CAP="$CAP"
# Recorded in the binary for `sf3d doctor` (what it was built with and for).
SF3D_BUILD_CUDA_VERSION=$("$CU13/bin/nvcc" --version | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p')
export SF3D_BUILD_CUDA_VERSION
export LIBRARY_PATH="$LINKS${LIBRARY_PATH:+:$LIBRARY_PATH}" CARGO_TARGET_DIR="$TARGET"
export CPATH="$CU13/include${CPATH:+:$CPATH}"
cd "$ROOT"
time cargo build --release -p sf3d-backend --features cuda --bin sf3d
BIN=$TARGET/release/sf3d
strip "$BIN"
echo "== $BIN: $(du -h "$BIN" | cut -f1) stripped"
echo "   needs at run time: $(readelf -d "$BIN" | grep -oE 'lib(cuda|cudart|cublas|cublasLt|curand|nvrtc)[^]]*' | sort -u | tr '\n' ' ')"
echo "   copy it with the model folder to the GPU host and run: SF3D_BIN=$BIN scripts/gpu-check.sh LOGDIR"
