#!/usr/bin/env bash
# Real PyTorch flight-recorder dumps of planted faults (torch on 2 GPUs, NCCL),
# with what lockstep's doctor and PyTorch's fr_trace say of each, packed into
# $OUT/torch_fr_real.tar.gz for tests/doctor/fixtures/torch_fr/real/.
# Usage (device tool, carry [".device"]): bash scripts/device_fr_fixtures.sh
set -uo pipefail
source "$(dirname "$0")/device_configure.sh"
cmake --build build/gpu -j "$(nproc)" --target lockstep > "$out/build.log" 2>&1 \
  || { grep -E "error" "$out/build.log" | head -20; exit 1; }
work="$(mktemp -d)/real"
mkdir -p "$work"
python3 -c 'import torch; print("torch", torch.__version__)' | tee "$work/VERSION"
for scenario in skip size bcast p2p kill; do
  python3 tests/doctor/fixtures/torch_fr/plant_fault.py "$scenario" "$work/$scenario" &
done
wait
for scenario in skip size bcast p2p kill; do
  d="$work/$scenario"
  build/gpu/lockstep doctor "$d" > "$d/lockstep-doctor.txt" 2>&1; echo "exit $?" >> "$d/lockstep-doctor.txt"
  timeout 120 python3 -m torch.distributed.flight_recorder.fr_trace "$d" > "$d/fr_trace.txt" 2>&1 \
    || timeout 120 python3 -m torch.distributed.flight_recorder.fr_trace -d "$d" >> "$d/fr_trace.txt" 2>&1
  echo "== $scenario"; head -4 "$d/lockstep-doctor.txt"
done
tar -czf "$out/torch_fr_real.tar.gz" -C "$(dirname "$work")" real
ls -la "$out"
