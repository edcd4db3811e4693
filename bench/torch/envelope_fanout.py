"""Control envelope fan-out, rank 0 -> every other local rank, Python to Python (issue 14's benchmark).

    lockstep launch --nproc 9 -- python3 bench/torch/envelope_fanout.py

The same ~4.4 KiB control message (a dict of 20 meta keys) goes from rank 0
to every other rank, delivered and validated, two ways in one job:
  * lockstep: Envelope preflighted, encoded and published on the
    shared-memory control channel (`ControlChannel.publish_envelope`),
    received, decoded and validated (checksums, schema, job token) by every
    reader (`ControlChannel.receive_envelope`);
  * torch: `broadcast_object_list` of the same dict over Gloo.
Latency = receiver's time.perf_counter_ns() once it holds the decoded dict
minus the sender's once it holds the dict to send (one host, one monotonic
clock): both ways are timed from the same built dict, so the application's
cost of building it is in neither. Rank 0 paces the messages so no queue
builds up. Rank 0 prints one JSON line: medians (over readers, of each
reader's median) of the latency, the ratio, and lockstep's latency split
into the writer's encode-and-publish and the readers' receive-and-decode
(counted from the writer's publish returning; a reader may already be
decoding by then). `--pin` pins local rank r to one CPU of its own
physical core (both ways under the same pinning).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Dict, List

import torch
import torch.distributed as dist

import lockstep
import lockstep.channel
import lockstep.torch as lt


def meta(i: int) -> dict:
    """The application's control message for chunk ``i``; ``sent_ns`` is stamped once it is built."""
    fields = {f"key_{k:02d}": k * 1000 + i for k in range(14)}
    fields.update({f"text_{k}": "x" * 1000 for k in range(4)})
    fields.update({"sent_ns": 0, "seq": i})
    return fields


def pace(gap_us: float) -> None:
    end = time.perf_counter_ns() + int(gap_us * 1000)
    while time.perf_counter_ns() < end:
        pass


def one_cpu_per_core() -> List[int]:
    """The CPUs this process may use, the first of each physical core's siblings first."""
    allowed = sorted(os.sched_getaffinity(0))
    firsts, seconds = [], []
    for cpu in allowed:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                first = int(f.read().replace("-", ",").split(",")[0])
        except OSError:
            first = cpu
        (firsts if first == cpu else seconds).append(cpu)
    return firsts + seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--gap-us", type=float, default=500.0, help="pause between messages")
    parser.add_argument("--spin-us", type=int, default=lockstep.channel.SPIN_US_DEFAULT,
                        help="how long a reader spins before it sleeps on the futex")
    parser.add_argument("--pin", action="store_true", help="pin each local rank to a CPU of its own core")
    args = parser.parse_args()
    if args.pin:
        cpus = one_cpu_per_core()
        os.sched_setaffinity(0, {cpus[int(os.environ["LOCAL_RANK"]) % len(cpus)]})
    rt = lockstep.init(timeout=30.0, startup_timeout=120.0)
    dist.init_process_group("gloo")
    world = lt.world()
    readers = dist.get_world_size() - 1
    codec = lockstep.codec()
    lockstep.set_phase("control")
    me = dist.get_rank()

    # -- lockstep: shared-memory control channel --------------------------------
    if me == 0:
        channel = lockstep.ControlChannel.create("fanout", readers=readers, slots=64, slot_bytes=16 * 1024)
    world.barrier()
    if me != 0:
        channel = lockstep.ControlChannel.open("fanout", reader=me - 1, readers=readers, slots=64,
                                               slot_bytes=16 * 1024, spin_us=args.spin_us)
    world.barrier()
    # Per message: the writer's (sent, published, 0), a reader's (decoded, sent, 0).
    stamps = []
    for i in range(args.messages):
        if me == 0:
            fields = meta(i)
            sent = fields["sent_ns"] = time.perf_counter_ns()
            channel.publish_envelope(codec, lockstep.Envelope("NOOP", i + 1, meta=fields))
            stamps.append((sent, time.perf_counter_ns(), 0))
            pace(args.gap_us)
        else:
            decoded = channel.receive_envelope(codec, timeout=30.0)
            stamps.append((time.perf_counter_ns(), decoded.message.meta["sent_ns"], 0))
    world.barrier()
    mine = torch.tensor(stamps, dtype=torch.int64)
    rows = [torch.empty_like(mine) for _ in range(world.size)]
    world.all_gather(rows, mine)
    lockstep_split = split(rows) if me == 0 else {}

    # -- torch: broadcast_object_list over Gloo -----------------------------------
    latencies = []
    pg = world.process_group
    for i in range(args.messages):
        if me == 0:
            objects = [meta(i)]
            objects[0]["sent_ns"] = time.perf_counter_ns()
        else:
            objects = [None]
        dist.broadcast_object_list(objects, src=0, group=pg)
        if me != 0:
            latencies.append((time.perf_counter_ns() - objects[0]["sent_ns"]) / 1000.0)
        else:
            pace(args.gap_us)
    torch_us = gather_medians(latencies, world)
    if me == 0:
        lockstep_us = lockstep_split.pop("latency_us")
        print(json.dumps({"bench": "envelope_fanout", "readers": readers, "messages": args.messages,
                          "reader_spin_us": args.spin_us, "gap_us": args.gap_us, "pinned": args.pin,
                          "bytes": len(codec.encode_envelope(lockstep.Envelope("NOOP", 1, meta=meta(0)))),
                          "lockstep_median_us": lockstep_us,
                          "of_which_us": lockstep_split,
                          "broadcast_object_list_median_us": round(torch_us, 2),
                          "speedup": round(torch_us / lockstep_us, 1)}), flush=True)
    dist.destroy_process_group()
    lockstep.shutdown()


def split(rows: List[torch.Tensor]) -> Dict[str, float]:
    """lockstep's latency and its parts: per reader the median over messages, then the median over readers."""
    writer = rows[0]
    publish_us = statistics.median(((writer[:, 1] - writer[:, 0]) / 1000.0).tolist())
    latency, receive = [], []
    for reader in rows[1:]:
        if not torch.equal(reader[:, 1], writer[:, 0]):
            raise SystemExit("a reader decoded another message than the writer sent in its turn")
        latency.append(statistics.median(((reader[:, 0] - writer[:, 0]) / 1000.0).tolist()))
        receive.append(statistics.median(((reader[:, 0] - writer[:, 1]) / 1000.0).tolist()))
    return {"latency_us": round(statistics.median(latency), 2), "encode_and_publish_us": round(publish_us, 2),
            "receive_and_decode_us": round(statistics.median(receive), 2)}


def gather_medians(latencies, world) -> float:
    """The median over every reader's latencies (rank 0 contributes none)."""
    mine = torch.tensor([statistics.median(latencies) if latencies else -1.0], dtype=torch.float64)
    rows = [torch.empty_like(mine) for _ in range(world.size)]
    world.all_gather(rows, mine)
    values = [float(r[0]) for r in rows if float(r[0]) >= 0]
    return statistics.median(values)


if __name__ == "__main__":
    main()
