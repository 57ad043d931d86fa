#!/usr/bin/env bash
# One short check of the CUDA build on a GPU host (≤ 5 minutes): device info, golden parity on the GPU, the
# full-size benchmark, and a one-screen summary printed last. Full logs go into LOGDIR.
#
#   scripts/gpu-check.sh LOGDIR [GOLDEN_DIR...]
#
# Needs nothing but the prebuilt binary and the golden folders: SF3D_BIN (default target/release/sf3d, built by
# scripts/build-cuda.sh) and the golden sets (default ../shared/golden/*). The host needs an NVIDIA driver for
# CUDA 13 and the CUDA math libraries (cuBLAS, cuRAND); no network.
#
# On a machine without a GPU (or with SF3D_GPU_CHECK_DEVICE=cpu) the same steps run on the CPU ("the CPU half"),
# with a smaller benchmark, so the script itself is tested everywhere.
set -uo pipefail

LOGDIR=${1:?usage: scripts/gpu-check.sh LOGDIR [GOLDEN_DIR...]}
shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SF3D_BIN:-$here/target/release/sf3d}
mkdir -p "$LOGDIR"
summary="$LOGDIR/summary.txt"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

if [ "$#" -gt 0 ]; then GOLDENS=("$@"); else GOLDENS=("$here"/../shared/golden/*/); fi

# 1. Device.
DEVICE=${SF3D_GPU_CHECK_DEVICE:-}
if [ -z "$DEVICE" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then DEVICE=cuda; else DEVICE=cpu; fi
fi
{
    echo "date: $(date -u +%FT%TZ)"
    echo "binary: $BIN ($("$BIN" --version 2>&1))"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    else
        echo "nvidia-smi: not found"
    fi
    nproc; free -g | head -2
} > "$LOGDIR/device.txt" 2>&1
say "== SF3D GPU check on $DEVICE ($(head -1 "$LOGDIR/device.txt" | cut -c7-))"
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null 2>&1; then
    export SF3D_GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    say "gpu: $SF3D_GPU_NAME"
fi

status=0
# 2. Golden parity: f32 on the device (1e-4 per stage), then the 16-bit compute dtype the device uses for the
#    transformer stack (bf16 on CUDA; f16 on the CPU, whose convolutions have no bf16 kernel) with the per-tensor
#    tolerances stated in `sf3d::parity::reduced_precision_tolerance`.
if [ "$DEVICE" = cuda ]; then HALF=bf16; else HALF=f16; fi
for g in "${GOLDENS[@]}"; do
    name=$(basename "$g")
    for dtype in f32 "$HALF"; do
        log="$LOGDIR/check-golden-$name-$dtype.txt"
        if timeout 120 "$BIN" check-golden "$g" --device "$DEVICE" --dtype "$dtype" > "$log" 2>&1; then
            say "check-golden $name ($dtype): $(tail -1 "$log")"
        else
            say "check-golden $name ($dtype): FAILED — $(tail -1 "$log")"
            grep FAIL "$log" | head -5 | tee -a "$summary"
            status=1
        fi
    done
done

# 3. Full-size benchmark (random weights): per-stage median after warm-up, peak memory.
if [ "$DEVICE" = cuda ]; then
    bench_args=(--full-size --device cuda --runs 10 --warmup 2 --json)
else
    bench_args=(--device cpu --runs 3 --warmup 1 --json)   # the CPU half: the built-in model, quick
fi
if timeout 240 "$BIN" bench "${bench_args[@]}" > "$LOGDIR/bench.json" 2> "$LOGDIR/bench.log"; then
    python3 - "$LOGDIR/bench.json" <<'PY' | tee -a "$summary"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"bench: model {r['model']['id']} ({r['model']['dtype']}) on {r['device']}, {r['runs']} runs, texture {r['texture_resolution']}²")
for s in r["stages"]:
    print(f"  {s['stage']:<18} median {s['median_ms']:9.1f} ms   min {s['min_ms']:9.1f} ms")
print(f"  total median {r['total_median_ms']:.1f} ms; network {r['network_median_ms']:.1f} ms; other {r['non_network_median_ms']:.1f} ms")
if r.get("peak_rss_bytes"): print(f"  peak RSS {r['peak_rss_bytes']/1e9:.2f} GB")
if r.get("gpu_peak_bytes"): print(f"  peak GPU memory {r['gpu_peak_bytes']/1e9:.2f} GB")
t = r.get("tweak")
if t: print(f"  re-extract ({t['changed']}): {t['reextract_ms']:.1f} ms = {100*t['ratio']:.1f} % of a full run")
PY
else
    say "bench: FAILED — $(tail -3 "$LOGDIR/bench.log")"
    status=1
fi
say "== logs in $LOGDIR"
exit $status
