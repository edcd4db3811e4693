"""Control envelope fan-out, rank 0 -> every other local rank, Python to Python (issue 14's benchmark).

    lockstep launch --nproc 9 -- python3 bench/torch/envelope_fanout.py

The same ~4 KiB control message (20 meta keys) goes from rank 0 to every
other rank, delivered and validated, two ways in one job:
  * lockstep: Envelope encoded with every preflight check, published on the
    shared-memory control channel, received and decoded (checksums, schema,
    job token) by every reader;
  * torch: `broadcast_object_list` of the same dict over Gloo.
Latency = receiver's time.perf_counter_ns() after decode minus the sender's
before encode (one host, one monotonic clock); rank 0 paces the messages so
no queue builds up. Rank 0 prints one JSON line with medians and the ratio,
and how much of lockstep's latency is the Python codec: the writer's encode
(meta dict included) and the readers' decode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.distributed as dist

import lockstep
import lockstep.channel
import lockstep.torch as lt


def meta(i: int, sent_ns: int) -> dict:
    fields = {f"key_{k:02d}": k * 1000 + i for k in range(14)}
    fields.update({f"text_{k}": "x" * 1000 for k in range(4)})
    fields.update({"sent_ns": sent_ns, "seq": i})
    return fields


def pace(gap_us: float) -> None:
    end = time.perf_counter_ns() + int(gap_us * 1000)
    while time.perf_counter_ns() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--gap-us", type=float, default=500.0, help="pause between messages")
    parser.add_argument("--spin-us", type=int, default=lockstep.channel.SPIN_US_DEFAULT,
                        help="how long a reader spins before it sleeps on the futex")
    args = parser.parse_args()
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
    latencies, codec_us = [], []  # codec_us: the writer's encode (with the meta), each reader's decode
    for i in range(args.messages):
        if me == 0:
            sent = time.perf_counter_ns()
            frame = codec.encode_envelope(lockstep.Envelope("NOOP", i + 1, meta=meta(i, sent)))
            codec_us.append((time.perf_counter_ns() - sent) / 1000.0)
            channel.publish(frame)
            pace(args.gap_us)
        else:
            frame = channel.receive(timeout=30.0)
            received = time.perf_counter_ns()
            decoded = codec.decode_envelope(frame)
            done = time.perf_counter_ns()
            codec_us.append((done - received) / 1000.0)
            latencies.append((done - decoded.message.meta["sent_ns"]) / 1000.0)
    world.barrier()
    lockstep_us = gather_medians(latencies, world)
    decode_us = gather_medians(codec_us if me != 0 else [], world)
    encode_us = statistics.median(codec_us) if me == 0 else 0.0

    # -- torch: broadcast_object_list over Gloo -----------------------------------
    latencies = []
    pg = world.process_group
    for i in range(args.messages):
        if me == 0:
            objects = [meta(i, time.perf_counter_ns())]
        else:
            objects = [None]
        dist.broadcast_object_list(objects, src=0, group=pg)
        if me != 0:
            latencies.append((time.perf_counter_ns() - objects[0]["sent_ns"]) / 1000.0)
        else:
            pace(args.gap_us)
    torch_us = gather_medians(latencies, world)
    if me == 0:
        print(json.dumps({"bench": "envelope_fanout", "readers": readers, "messages": args.messages,
                          "reader_spin_us": args.spin_us, "gap_us": args.gap_us,
                          "bytes": len(codec.encode_envelope(lockstep.Envelope("NOOP", 1, meta=meta(0, 0)))),
                          "lockstep_median_us": round(lockstep_us, 2),
                          "of_which_encode_us": round(encode_us, 2), "of_which_decode_us": round(decode_us, 2),
                          "broadcast_object_list_median_us": round(torch_us, 2),
                          "speedup": round(torch_us / lockstep_us, 1)}), flush=True)
    dist.destroy_process_group()
    lockstep.shutdown()


def gather_medians(latencies, world) -> float:
    """The median over every reader's latencies (rank 0 contributes none)."""
    mine = torch.tensor([statistics.median(latencies) if latencies else -1.0], dtype=torch.float64)
    rows = [torch.empty_like(mine) for _ in range(world.size)]
    world.all_gather(rows, mine)
    values = [float(r[0]) for r in rows if float(r[0]) >= 0]
    return statistics.median(values)


if __name__ == "__main__":
    main()
