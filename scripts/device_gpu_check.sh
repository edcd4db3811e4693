#!/usr/bin/env bash
# Builds lockstep on a GPU machine that lacks Debian's Gloo/xxhash/hiredis
# (the `device` machines: Ubuntu 24.04, CUDA 13, NCCL 2.28), runs the GPU
# tests and the probe, and leaves logs in $OUT (or ./device-out).
# The .deb files come from `apt-get download` on a Debian 12 machine into
# .device/debs (gitignored; fetch them on a Debian 12 machine with
#   mkdir -p .device/debs .device/extra && cd .device/debs &&
#   apt-get download libgloo0 libgloo-dev libxxhash-dev libhiredis0.14 libhiredis-dev libbenchmark-dev libbenchmark1debian \
#     libibverbs1 libibverbs-dev libnl-3-200 libnl-route-3-200 &&
#   cd ../extra && apt-get download pkgconf pkgconf-bin libpkgconf3 pkg-config
# ) and carried to the GPU machine (`device` tool: carry [".device"]). They are
# unpacked into a scratch folder and merged into /usr only (a Debian
# package's /lib would replace Ubuntu's /lib -> usr/lib link).
# Usage: [LOCKSTEP_BUILD_BENCH=ON] scripts/device_gpu_check.sh [extra targets...]
set -uo pipefail
source "$(dirname "$0")/device_configure.sh"
targets=(lockstep nccl_backend_test nccl_abort_test cuda_model_test nccl_run_test lockstep_gpu_probe "$@")
cmake --build build/gpu -j 16 --target "${targets[@]}" > "$out/build.log" 2>&1 \
  || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
ctest --test-dir build/gpu -L gpu --output-on-failure 2>&1 | tee "$out/ctest-gpu.log"
build/gpu/tests/gpu/lockstep_gpu_probe --steps 20 --model-calls 10 2>&1 | tee "$out/probe.log"
# The same pp0 stream over Gloo and over NCCL, one after the other on this
# machine (BENCHMARKS.md "GPU mesh": compare the two, not across machines).
stream=(--topology pp0 --nproc 2 --model small --chunks 60 --hard-cut-every 0 --recompute-every 0
        --decode-ms 0 --generate-ms 0)
for backend in gloo nccl; do
  echo "== backend $backend" | tee -a "$out/run-compare.log"
  build/gpu/lockstep run "${stream[@]}" --backend "$backend" 2>&1 | tee -a "$out/run-compare.log"
done
# A 14B-video-DiT-shaped layer on the one GPU mesh rank (the CPU cannot run it
# at speed); start-up covers the weight load and its CPU-derived fingerprint.
echo "== dit14b-layer nccl" | tee "$out/run-dit14b.log"
/usr/bin/time -f "wall %e s, max rss %M KiB" build/gpu/lockstep run --topology pp0 --nproc 2 \
  --model dit14b-layer --chunks 8 --backend nccl --decode-ms 0 --generate-ms 0 --startup-deadline-ms 120000 \
  2>&1 | tee -a "$out/run-dit14b.log"
