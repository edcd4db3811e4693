"""The Python codec's share of the envelope fan-out (issue 14): encode and decode of the fan-out's message.

    PYTHONPATH=build/default/python /usr/bin/python3 bench/torch/codec_time.py

Times, in one process, the message `envelope_fanout.py` sends (20 meta keys,
~4.4 KiB): building its meta dict, `Codec.encode_envelope` with the meta
already built, and `Codec.decode_envelope`. Prints one JSON line of medians
in microseconds over --calls calls each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from envelope_fanout import meta  # noqa: E402  (the same message as the fan-out)

import lockstep  # noqa: E402


def median_us(call: Callable[[int], object], calls: int) -> float:
    times = []
    for i in range(calls):
        start = time.perf_counter_ns()
        call(i)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    codec = lockstep.Codec(token_digest=12345, sender_rank=0)
    built = meta(0)
    frame = codec.encode_envelope(lockstep.Envelope("NOOP", 1, meta=built))
    print(json.dumps({"bench": "codec_time", "bytes": len(frame), "calls": args.calls,
                      "meta_build_us": round(median_us(meta, args.calls), 2),
                      "encode_us": round(median_us(
                          lambda i: codec.encode_envelope(lockstep.Envelope("NOOP", i + 1, meta=built)), args.calls), 2),
                      "decode_us": round(median_us(lambda i: codec.decode_envelope(frame), args.calls), 2)}))


if __name__ == "__main__":
    main()
