"""Guarded vs raw torch process group on a 14B-shaped TP step (issue 14's benchmark).

    lockstep launch --nproc 2 -- python3 bench/torch/tp_step.py --device cuda          # TP=2, NCCL
    lockstep launch --nproc 2 -- python3 bench/torch/tp_step.py --device cpu --dim 256 --tokens 96 --layers 4

Per layer, as a Wan-2.1-14B-shaped TP block does: a bf16 GEMM [tokens x dim] x
[dim x dim/P], one small f32 all-reduce (the QK-norm sums, 2*tokens floats),
a second GEMM, and two bf16 all-reduces of [tokens x dim] (attention out,
MLP out). The same kernels and all-reduces run through the raw process group
(`dist.all_reduce(t, group=pg)`) and through lockstep's guarded group, in
alternating rounds of the same process, so the ratio compares like with like.
Rank 0 prints one JSON line: median ms/step of each and guarded/raw.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.distributed as dist

import lockstep
import lockstep.torch as lt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--dim", type=int, default=5120)
    parser.add_argument("--tokens", type=int, default=2160)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per mode, alternating")
    args = parser.parse_args()

    lockstep.init(timeout=60.0, startup_timeout=120.0)
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(int(__import__("os").environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    world = dist.get_world_size()
    mesh = lt.new_group("mesh", range(world))
    raw_pg = mesh.process_group
    lockstep.set_phase("generator")
    dtype = torch.bfloat16 if cuda else torch.float32
    device = torch.device("cuda" if cuda else "cpu")
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(args.tokens, args.dim, device=device, dtype=dtype, generator=gen) * 0.01
    w1 = torch.randn(args.dim, args.dim // world, device=device, dtype=dtype, generator=gen) * 0.01
    w2 = torch.randn(args.dim // world, args.dim, device=device, dtype=dtype, generator=gen) * 0.01
    norm = torch.zeros(2 * args.tokens, device=device, dtype=torch.float32)

    def raw(t: torch.Tensor) -> None:
        dist.all_reduce(t, group=raw_pg)

    def guarded(t: torch.Tensor) -> None:
        mesh.all_reduce(t)

    def step(all_reduce) -> None:
        for _ in range(args.layers):
            h = x @ w1
            all_reduce(norm)
            out = h @ w2
            all_reduce(out)
            out2 = h @ w2
            all_reduce(out2)

    def timed_round(all_reduce) -> float:
        if cuda:
            torch.cuda.synchronize()
        begin = time.perf_counter()
        for _ in range(args.steps):
            step(all_reduce)
        if cuda:
            torch.cuda.synchronize()
        else:
            dist.barrier(group=raw_pg)
        mesh.synchronize(timeout=60.0)
        return (time.perf_counter() - begin) * 1000.0 / args.steps

    for fn in (raw, guarded):  # warm-up: NCCL channels, cuBLAS heuristics, the tracker's lane
        timed_round(fn)
    times = {"raw": [], "guarded": []}
    for r in range(args.rounds):
        order = (("raw", raw), ("guarded", guarded)) if r % 2 == 0 else (("guarded", guarded), ("raw", raw))
        for name, fn in order:
            times[name].append(timed_round(fn))
    if dist.get_rank() == 0:
        raw_ms = statistics.median(times["raw"])
        guarded_ms = statistics.median(times["guarded"])
        print(json.dumps({"bench": "tp_step", "device": torch.cuda.get_device_name() if cuda else "cpu",
                          "tp": world, "dim": args.dim, "tokens": args.tokens, "layers": args.layers,
                          "all_reduces_per_step": 3 * args.layers, "raw_ms": round(raw_ms, 3),
                          "guarded_ms": round(guarded_ms, 3), "ratio": round(guarded_ms / raw_ms, 4),
                          "raw_min_ms": round(min(times["raw"]), 3), "guarded_min_ms": round(min(times["guarded"]), 3),
                          "rounds": times}), flush=True)
    lockstep.set_phase("control")
    dist.destroy_process_group()
    lockstep.shutdown()


if __name__ == "__main__":
    main()
