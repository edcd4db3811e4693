"""Fault to every rank exited, when one rank withholds an all_reduce (issue 16's hang table).

    python3 -m torch.distributed.run --nproc-per-node 2 bench/torch/hang_exit.py --mode raw --fault-file F
    lockstep launch --nproc 2 -- python3 bench/torch/hang_exit.py --mode lockstep --fault-file F

Both on NCCL with the same timeout (default 8 s): `raw` is plain PyTorch
(`init_process_group(timeout=...)`, its watchdog and defaults) under torchrun;
`lockstep` is the same loop through a guarded group (`lockstep.init(timeout=...)`)
under `lockstep launch`. At step 5 rank 1 writes the time to --fault-file and
sleeps instead of calling all_reduce; the caller measures from that time to
the launcher's exit.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import torch
import torch.distributed as dist

FAULT_STEP = 5
SLEEP_S = 3600.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("raw", "lockstep"), required=True)
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds, both modes")
    parser.add_argument("--fault-file", required=True)
    args = parser.parse_args()

    rank = int(os.environ["RANK"])
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if args.mode == "lockstep":
        import lockstep
        import lockstep.torch as lt

        lockstep.init(timeout=args.timeout, startup_timeout=120.0)
        dist.init_process_group("nccl")
        mesh = lt.new_group("mesh", range(dist.get_world_size()))
        lockstep.set_phase("generator")
        all_reduce = mesh.all_reduce
    else:
        dist.init_process_group("nccl", timeout=datetime.timedelta(seconds=args.timeout))
        all_reduce = dist.all_reduce
    x = torch.ones(1 << 20, device="cuda")
    for step in range(1000):
        if step == FAULT_STEP and rank == 1:
            with open(args.fault_file + ".tmp", "w") as f:
                f.write(repr(time.time()))
            os.replace(args.fault_file + ".tmp", args.fault_file)
            time.sleep(SLEEP_S)
        all_reduce(x)
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
