"""examples/torch_stream under `lockstep launch` (label torch): it streams with hard cuts and recomputes,
drops the result in flight at a cut, and its TP=2 output equals the one-rank mesh's within tolerance."""

from __future__ import annotations

import os
import sys
import unittest

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HERE, PYTHON, JobTestCase, launch  # noqa: E402

STREAM = os.path.join(HERE, "..", "..", "examples", "torch_stream", "stream.py")
BOUND_S = 120.0
ARGS = ["--chunks", "12", "--hard-cut-every", "6", "--recompute-every", "4", "--depth", "2", "--decode-ms", "2"]


class TorchStream(JobTestCase):
    def stream(self, nproc: int) -> dict:
        out = os.path.join(self.case_dir, f"outputs-{nproc}.pt")
        job = launch(self.case_dir, [PYTHON, STREAM, *ARGS, "--out", out], nproc=nproc, bound_s=BOUND_S)
        self.assertEqual(job.exit_code, 0, job.describe())
        return torch.load(out)

    def test_tp2_streams_like_one_rank(self):
        one, two = self.stream(2), self.stream(3)
        for run in (one, two):
            report = run["report"]
            # One hard cut with one envelope in flight: its result is dropped, never emitted.
            self.assertEqual((report["hard_cuts"], report["stale_drops"]), (1, 1), report)
            self.assertEqual(report["emitted"], 11, report)
            self.assertEqual(report["recomputes"], 3, report)
        self.assertEqual([chunk for chunk, _ in one["outputs"]], [chunk for chunk, _ in two["outputs"]])
        self.assertNotIn(5, [chunk for chunk, _ in one["outputs"]], "chunk 5 was in flight at the cut")
        scale = max(1.0, max(float(x.abs().max()) for _, x in one["outputs"]))
        for (chunk, a), (_, b) in zip(one["outputs"], two["outputs"]):
            self.assertLessEqual(float((a - b).abs().max()), 1e-4 * scale, f"chunk {chunk}")


if __name__ == "__main__":
    unittest.main()
