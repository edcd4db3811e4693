#!/usr/bin/env bash
# The GPU-native path on a machine with 2+ GPUs (issue 16): builds lockstep,
# runs the GPU tests (the stream-ordered guarded NCCL path, graph capture on
# a TP mesh), the guarded-vs-raw TP probe (BENCHMARKS.md "GPU mesh"), the
# data-path break-it cases with --backend nccl on tp and pp1 (a results
# table: exit code, seconds, the doctor's verdict), and the hang table: one
# rank withholds an all_reduce under plain PyTorch and under lockstep.
# Logs land in $OUT. Usage (device tool, carry [".device"]):
#   bash scripts/device_multigpu_check.sh [tests|probe|breakit|hang|overlap|recovery|recovery-bench ...]
#   (default: all but recovery-bench)
# `overlap`: the pipeline at the 14B layer shape with Stage 0 on its own GPU
# (pp0 on 2 GPUs, pp1 with a TP=2 mesh on 3, TP=4 on 5 where lent), D = 1
# and 2, decode costs 0, 20 and 100 ms (OVERLAP_DECODE_MS).
set -uo pipefail
source "$(dirname "$0")/device_configure.sh"
parts=("$@"); (( ${#parts[@]} )) || parts=(tests probe breakit hang overlap recovery)
gpus=$(nvidia-smi -L | wc -l)
has() { [[ " ${parts[*]} " == *" $1 "* ]]; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
cmake --build build/gpu -j "$(nproc)" --target lockstep nccl_backend_test nccl_abort_test guarded_stream_test \
  cuda_model_test chunk_tensors_test nccl_run_test lockstep_tp_probe lockstep_python recovery_test > "$out/build.log" 2>&1 \
  || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
bin=build/gpu/lockstep
if has tests; then
  timeout 400 ctest --test-dir build/gpu -L gpu --output-on-failure > "$out/ctest-gpu.log" 2>&1
  grep -E "^\[  FAILED|Failure|tests passed|Test +#" "$out/ctest-gpu.log" | cut -c1-200
fi
if has probe; then
  for tp in 2 4; do
    (( gpus >= tp )) || { echo "TP=$tp: not run, $gpus GPUs" | tee -a "$out/probe.log"; continue; }
    timeout 240 "$bin" launch --nproc "$tp" -- build/gpu/tests/gpu/lockstep_tp_probe --rounds 6 --steps 10 2>&1 \
      | grep -v "^lockstep launch" | tee -a "$out/probe.log"
  done
fi
if has breakit; then
  # Expected launcher exit codes, as the CPU break-it suite asserts them.
  declare -A want=([ok]="0" [B1]="30" [B2]="31" [B4]="32 21" [B5]="34" [C1]="137" [C2]="60" [C4]="20 21"
                   [C5]="70 21" [D2]="0" [F2]="40 21" [H1]="40 21" [H2]="40 21")
  table="$out/breakit-nccl.md"
  echo "| topology | case | exit | expected | s | verdict |" > "$table"
  echo "|---|---|---|---|---|---|" >> "$table"
  shapes=("tp 2" "pp1 3")
  (( gpus >= 4 )) && shapes+=("tp 4" "pp1 5")
  for shape in "${shapes[@]}"; do
    read -r topology nproc <<< "$shape"
    for case in ok B1 B2 B4 B5 C1 C2 C4 C5 D2 F2 H1 H2; do
      # tp has no boundary: rank 0 is in the mesh (B1) and sends no payload (C2).
      [[ $topology == tp && ( $case == B1 || $case == C2 ) ]] && continue
      chunks=(--chunks 6 --hard-cut-every 0)
      [[ $case == D2 ]] && chunks=(--chunks 8 --hard-cut-every 4)
      args=(run --backend nccl --topology "$topology" --nproc "$nproc" --model small "${chunks[@]}"
            --recompute-every 2 --deadline-ms 1500 --startup-deadline-ms 60000)
      [[ $case != ok ]] && args+=(--inject "$case")
      start=$(now)
      timeout 90 "$bin" "${args[@]}" > "$out/breakit-$topology$nproc-$case.log" 2>&1
      code=$?
      secs=$(since "$start")
      verdict=$(grep -m1 "^VERDICT" "$out/breakit-$topology$nproc-$case.log" | cut -c1-150 | tr '|' '/')
      [[ " ${want[$case]} " == *" $code "* ]] && mark="$code" || mark="**$code** (unexpected)"
      printf "| %s %s | %s | %s | %s | %s | %s |\n" "$topology" "$nproc" "$case" "$mark" "${want[$case]}" "$secs" \
        "${verdict:-}" >> "$table"
    done
  done
  cat "$table"
fi
if has hang; then
  export PYTHONPATH="$PWD/build/gpu/python"
  table="$out/hang.md"
  echo "| what | timeout | fault -> every rank exited (s) | exit |" > "$table"
  echo "|---|---|---|---|" >> "$table"
  for mode in lockstep raw; do
    fault="$out/fault-$mode.txt"; rm -f "$fault"
    if [[ $mode == raw ]]; then
      cmd=(python3 -m torch.distributed.run --nproc-per-node 2 bench/torch/hang_exit.py --mode raw --fault-file "$fault")
    else
      cmd=("$bin" launch --nproc 2 -- python3 bench/torch/hang_exit.py --mode lockstep --fault-file "$fault")
    fi
    timeout 300 "${cmd[@]}" > "$out/hang-$mode.log" 2>&1
    code=$?
    secs=$( [[ -f $fault ]] && since "$(cat "$fault")" || echo "no fault time")
    echo "| PyTorch 2.11 NCCL, $mode (bench/torch/hang_exit.py) | 8 s | $secs | $code |" >> "$table"
  done
  # lockstep's own runtime: SIGSTOP of a mesh rank (C4), deadline 1.5 s.
  start=$(now)
  timeout 90 "$bin" run --backend nccl --topology tp --nproc 2 --model small --chunks 6 --deadline-ms 1500 \
    --startup-deadline-ms 60000 --inject C4 > "$out/hang-c4.log" 2>&1
  code=$?
  echo "| lockstep run --backend nccl, C4 (SIGSTOP), whole job incl. start-up | 1.5 s | $(since "$start") | $code |" >> "$table"
  grep -E "failed first" "$out/hang-c4.log" | tee -a "$table"
  cat "$table"
fi
if has recovery; then
  # Warm recovery with the mesh on NCCL (issue 18): the recovery break-it
  # cases (Stage 0 on its own GPU from 3 GPUs on), then fault -> first chunk.
  LOCKSTEP_BIN="$bin" LOCKSTEP_RECOVERY_JOB="--backend nccl --model small --startup-deadline-ms 60000" \
    timeout 400 build/gpu/tests/breakit/recovery_test 2>&1 | grep -E "^\[ +(OK|FAILED) |Failure|Expected|Which is|HUNG" \
    | tee "$out/recovery-nccl.log"
fi
if has recovery-bench; then
  # dit14b-layer, TP=2 mesh + Stage 0 on its own GPU; RECOVERY_FAULTS warm recoveries and
  # RECOVERY_COLD exit-and-restart runs per fault.
  timeout 560 python3 bench/recovery_time.py --lockstep "$bin" --faults "${RECOVERY_FAULTS:-5}" \
    --cold-faults "${RECOVERY_COLD:-2}" --kinds "${RECOVERY_KINDS:-straggler,worker,stage0}" \
    --job "--backend nccl --model dit14b-layer --deadline-ms 3000 --startup-deadline-ms 120000 --generate-ms 0" \
    2>&1 | tee "$out/recovery-bench.md"
fi
if has overlap; then
  table="$out/overlap.md"
  echo "| shape | Stage 0 | decode ms | D | period ms | stage0 ms | stage1 ms | boundary ms | period/max | OverlapScore | mesh idle ms | pulled ahead |" > "$table"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|" >> "$table"
  for shape in "pp0 2" "pp1 3" "pp1 5"; do
    read -r topology nproc <<< "$shape"
    (( gpus >= nproc )) || { echo "| $topology $nproc | not run: $gpus GPUs |" >> "$table"; continue; }
    for decode in ${OVERLAP_DECODE_MS:-0 20 100}; do
      for depth in 1 2; do
        log="$out/overlap-$topology$nproc-decode$decode-d$depth.json"
        timeout 180 "$bin" run --json --backend nccl --topology "$topology" --nproc "$nproc" --model dit14b-layer \
          --chunks 24 --hard-cut-every 0 --depth "$depth" --decode-ms "$decode" --generate-ms 0 \
          --deadline-ms 20000 --startup-deadline-ms 120000 > "$log" 2> "${log%.json}.err"
        python3 - "$log" "$topology $nproc" "$decode" "$depth" >> "$table" <<'PY' || echo "| $topology $nproc | failed, see $log |" >> "$table"
import json, sys
d = json.load(open(sys.argv[1]))
o = d["overlap"]
print("| %s | %s | %s | %s | %.1f | %.1f | %.1f | %.2f | %.3f | %.3f | %.0f | %d |" % (
    sys.argv[2], d["stage0_device"], sys.argv[3], sys.argv[4], o["period_ms"]["median"], o["stage0_ms"]["median"],
    o["stage1_ms"]["median"], o["boundary_ms"]["median"], o["period_over_max"], o["overlap_score"],
    o["mesh_idle_ms_total"], d["payloads_pulled_ahead"]))
PY
      done
    done
  done
  cat "$table"
fi
