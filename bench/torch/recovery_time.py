#!/usr/bin/env python3
"""Warm recovery of a PyTorch program: fault -> first chunk emitted after it.

Runs examples/torch_stream/stream.py under `lockstep launch --on-fault
restart` N times per fault, the fault injected by the example itself
(`--inject KIND:RANK:CHUNK`, generation 0), and reads its output: from the
INJECT line's wall time to Stage 0's first EMIT line of generation 1. Faults:
`worker` (kill -9 of mesh rank 2: restarted, torch imported, model loaded),
`stage0` (kill -9 of Stage 0), `stall` (mesh rank 2 hangs past the deadline:
no process dies; the number includes the deadline). Prints one table
(median and p99) and the command line that produced it.

Usage: python3 bench/torch/recovery_time.py [--faults 20] [--kinds worker,stage0,stall]
       [--python /usr/bin/python3] [--device cpu|cuda] [--deadline-s 2]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INJECTIONS = {"worker": "kill:2:10", "stage0": "kill:0:10", "stall": "stall:2:10"}
BOUND_S = 180


def one_fault(lockstep: str, python: str, kind: str, device: str, deadline_s: float) -> int:
    """Milliseconds from the fault to the first chunk emitted by generation 1."""
    with tempfile.TemporaryDirectory(prefix="lockstep-torch-recovery-") as scratch:
        command = [lockstep, "launch", "--on-fault", "restart", "--nproc", "3", "--job-dir", f"{scratch}/job", "--",
                   python, str(ROOT / "examples" / "torch_stream" / "stream.py"), "--chunks", "40",
                   "--hard-cut-every", "0", "--decode-ms", "2", "--deadline-s", str(deadline_s),
                   "--device", device, "--inject", INJECTIONS[kind]]
        out = subprocess.run(command, capture_output=True, text=True, timeout=BOUND_S)
        if out.returncode != 0:
            raise RuntimeError(f"{kind}: exit {out.returncode}\n{out.stderr[-3000:]}")
        fault = re.search(r"INJECT \w+ chunk \d+ unix_ms (\d+)", out.stdout)
        generation = out.stdout.find("[rank 0] GENERATION 1 ")
        emit = re.search(r"\[rank 0\] EMIT chunk \d+ epoch \d+ unix_ms (\d+)", out.stdout[generation:])
        if fault is None or generation < 0 or emit is None:
            raise RuntimeError(f"{kind}: no fault, recovery or emit after it in the output\n{out.stdout[-3000:]}")
        return int(emit.group(1)) - int(fault.group(1))


def p99(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lockstep", default=str(ROOT / "build" / "default" / "lockstep"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--kinds", default="worker,stage0,stall")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--deadline-s", type=float, default=2.0)
    args = parser.parse_args()
    print("| fault | faults | fault -> first chunk after it: median / p99 ms |")
    print("|---|---|---|")
    for kind in args.kinds.split(","):
        times = [one_fault(args.lockstep, args.python, kind, args.device, args.deadline_s) for _ in range(args.faults)]
        print(f"| {kind} | {len(times)} | {statistics.median(times):.0f} / {p99(times)} |", flush=True)
    print(f"command: {' '.join(sys.argv)} (device {args.device}, deadline {args.deadline_s} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
