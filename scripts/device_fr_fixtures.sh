#!/usr/bin/env bash
# Real PyTorch flight-recorder dumps of planted faults (torch on 2 GPUs, NCCL;
# the 4-rank subgroup faults where 4 GPUs are lent),
# with what lockstep's doctor and PyTorch's fr_trace say of each, packed into
# $OUT/torch_fr_real.tar.gz for tests/doctor/fixtures/torch_fr/real/.
# With `export`: instead, the other way round — a lockstep job's dumps
# exported with `lockstep doctor --export-fr` and read by PyTorch's fr_trace —
# and the doctor benchmark on 1024 ranks × 2000 flight-recorder entries.
# Usage (device tool, carry [".device"]): bash scripts/device_fr_fixtures.sh [export]
set -uo pipefail
[[ ${1:-} == export ]] && export LOCKSTEP_BUILD_BENCH=ON
source "$(dirname "$0")/device_configure.sh"
if [[ ${1:-} == export ]]; then
  cmake --build build/gpu -j "$(nproc)" --target lockstep lockstep_bench_doctor > "$out/build.log" 2>&1 \
    || { grep -E "error" "$out/build.log" | head -20; exit 1; }
  build/gpu/lockstep run --topology pp1 --nproc 3 --chunks 6 --deadline-ms 1500 --inject C4 > "$out/c4.log" 2>&1
  job=$(grep -o "/[^ ]*/dumps/rank-0.json" "$out/c4.log" | head -1 | sed 's#/dumps/rank-0.json##')
  build/gpu/lockstep doctor "$job" --export-fr "$out/export" | head -3 | tee "$out/doctor-export.txt"
  ls "$out/export" | tee -a "$out/doctor-export.txt"
  for prefix in "" "-p nccl_trace_rank_"; do
    echo "== fr_trace $prefix" | tee -a "$out/fr_trace-export.txt"
    timeout 120 python3 -m torch.distributed.flight_recorder.fr_trace $prefix "$out/export" 2>&1 | tail -25 \
      | tee -a "$out/fr_trace-export.txt"
  done
  nproc | tee "$out/bench-doctor.txt"
  build/gpu/bench/lockstep_bench_doctor --benchmark_filter='TorchFlightRecorder|DoctorDiagnose/1024' 2>&1 \
    | tee -a "$out/bench-doctor.txt"
  exit 0
fi
cmake --build build/gpu -j "$(nproc)" --target lockstep > "$out/build.log" 2>&1 \
  || { grep -E "error" "$out/build.log" | head -20; exit 1; }
work="$(mktemp -d)/real"
mkdir -p "$work"
python3 -c 'import torch; print("torch", torch.__version__)' | tee "$work/VERSION"
scenarios=(skip size bcast p2p kill json)
(( $(nvidia-smi -L | wc -l) >= 4 )) && scenarios+=(subgroup-0 subgroup-1 subgroup-2 subgroup-3)
for scenario in "${scenarios[@]}"; do
  python3 tests/doctor/fixtures/torch_fr/plant_fault.py "$scenario" "$work/$scenario" &
done
wait
for scenario in "${scenarios[@]}"; do
  d="$work/$scenario"
  build/gpu/lockstep doctor "$d" > "$d/lockstep-doctor.txt" 2>&1; echo "exit $?" >> "$d/lockstep-doctor.txt"
  timeout 120 python3 -m torch.distributed.flight_recorder.fr_trace "$d" > "$d/fr_trace.txt" 2>&1 \
    || timeout 120 python3 -m torch.distributed.flight_recorder.fr_trace -d "$d" >> "$d/fr_trace.txt" 2>&1
  echo "== $scenario"; head -4 "$d/lockstep-doctor.txt"
done
tar -czf "$out/torch_fr_real.tar.gz" -C "$(dirname "$work")" real
ls -la "$out"
