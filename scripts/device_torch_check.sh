#!/usr/bin/env bash
# The PyTorch integration on a GPU machine with 2+ GPUs (torch 2.11, NCCL):
# builds lockstep and its Python package for the python3 that has torch, runs
# the torch break-it cases with the mesh on NCCL (LOCKSTEP_TEST_DEVICE=cuda),
# the streaming example on the GPUs, and the benchmarks of BENCHMARKS.md
# "PyTorch": guarded vs raw process group on the 14B-shaped TP=2 step (NCCL)
# and on the `small` shape (Gloo, CPU), and the control envelope fan-out to 8
# local ranks against broadcast_object_list; `recovery`: warm recovery of the
# streaming example with its mesh on NCCL; `fanout`: the codec alone and
# the envelope fan-out, nine jobs and one with its ranks pinned. Logs land in $OUT.
# Usage (device tool, carry [".device"]):
#   bash scripts/device_torch_check.sh [breakit|stream|bench|recovery|fanout ...]   (default: all but fanout)
set -uo pipefail
parts=("$@"); (( ${#parts[@]} )) || parts=(breakit stream bench recovery)
has() { [[ " ${parts[*]} " == *" $1 "* ]]; }
source "$(dirname "$0")/device_configure.sh"
cmake --build build/gpu -j "$(nproc)" --target lockstep lockstep_python > "$out/build.log" 2>&1 \
  || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }
grep -E "lockstep: Python package" "$out/configure.log" | tee "$out/python.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "gpus", torch.cuda.device_count())' | tee -a "$out/gpu.txt"
export PYTHONPATH="$PWD/build/gpu/python" LOCKSTEP_BIN="$PWD/build/gpu/lockstep" PYTHONUNBUFFERED=1
launch=(build/gpu/lockstep launch --grace-ms 2000)
has breakit && (cd tests/python && LOCKSTEP_TEST_DEVICE=cuda timeout 400 python3 -m unittest -v \
   test_torch_breakit.TorchBreakit.test_ok_streams_with_checks_on \
   test_torch_breakit.TorchBreakit.test_guarded_collective_returns_before_it_completed \
   test_torch_breakit.TorchBreakit.test_a5_corrupted_envelope_byte_is_refused_on_its_checksum \
   test_torch_breakit.TorchBreakit.test_d2_result_after_a_hard_cut_is_dropped_never_emitted \
   test_torch_breakit.TorchBreakit.test_skipped_collective_is_a_hang_every_rank_leaves_within_the_deadline \
   test_torch_breakit.TorchBreakit.test_b1_rank0_in_a_mesh_collective_is_an_error_not_a_silent_skip \
   test_torch_breakit.TorchBreakit.test_b2_world_collective_in_the_generator_phase \
   test_torch_breakit.TorchBreakit.test_c1_kill9_of_a_rank_stops_every_rank \
   test_torch_breakit.TorchBreakit.test_h1_one_ranks_input_perturbed \
   $( (( $(nvidia-smi -L | wc -l) >= 3 )) && echo test_torch_breakit.TorchBreakit.test_b4_count_differs_on_one_rank) \
   ) 2>&1 | tee "$out/breakit-nccl.log"
has stream && timeout 120 "${launch[@]}" --nproc 3 -- python3 examples/torch_stream/stream.py --device cuda \
  --chunks 24 2>&1 | tail -5 | tee "$out/stream-cuda.log"
has recovery && (cd tests/python && LOCKSTEP_TEST_DEVICE=cuda timeout 400 python3 -m unittest -v test_torch_recovery) \
  2>&1 | tee "$out/recovery-nccl.log"
if has fanout; then  # the codec alone, then the envelope fan-out
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz" | tee "$out/cpu.txt"
  python3 bench/torch/codec_time.py | tee "$out/codec.jsonl"
  for spin in 1000 1000 1000 1000 1000 1000 1000 1000 20; do
    timeout 100 "${launch[@]}" --nproc 9 -- python3 bench/torch/envelope_fanout.py --spin-us "$spin" 2>&1 | tail -1 \
      | tee -a "$out/fanout.jsonl"
  done
  timeout 100 "${launch[@]}" --nproc 9 -- python3 bench/torch/envelope_fanout.py --spin-us 1000 --pin \
    > "$out/fanout-pinned.log" 2>&1; tail -3 "$out/fanout-pinned.log"
fi
has bench || exit 0
timeout 200 "${launch[@]}" --nproc 2 -- python3 bench/torch/tp_step.py --device cuda --rounds 10 2>&1 | tail -3 \
  | tee "$out/bench.jsonl"
timeout 100 "${launch[@]}" --nproc 2 -- python3 bench/torch/tp_step.py --device cpu --dim 256 --tokens 96 \
  --layers 4 --steps 20 2>&1 | tail -2 | tee -a "$out/bench.jsonl"
for spin in 20 1000; do
  timeout 100 "${launch[@]}" --nproc 9 -- python3 bench/torch/envelope_fanout.py --spin-us "$spin" 2>&1 | tail -1 \
    | tee -a "$out/bench.jsonl"
done
