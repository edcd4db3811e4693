"""Warm recovery through the Python package (ctest labels `torch`, `recovery`): examples/torch_stream under
`lockstep launch --on-fault restart`, a fault injected in generation 0.

Each case asserts that the job completes its chunk budget, that the launcher
recorded one recovery and restarted only the rank that died, that the
survivors kept their process (same pid in both generations: their model was
not loaded again), and that the stream resumed right after the last chunk
Stage 0 emitted, under a new epoch, with every chunk emitted once, in order.
Gloo on CI; LOCKSTEP_TEST_DEVICE=cuda puts the mesh on NCCL (GPU machines).
"""

from __future__ import annotations

import os
import re
import sys
import unittest
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HERE, PYTHON, JobTestCase, launch  # noqa: E402

STREAM = os.path.join(HERE, "..", "..", "examples", "torch_stream", "stream.py")
BOUND_S = 150.0
CHUNKS = 12
ARGS = ["--chunks", str(CHUNKS), "--hard-cut-every", "0", "--recompute-every", "4", "--depth", "2",
        "--decode-ms", "2", "--deadline-s", "3", "--device", os.environ.get("LOCKSTEP_TEST_DEVICE", "cpu")]
GENERATION_LINE = re.compile(r"^\[rank (\d+)\] GENERATION (\d+) pid (\d+) start (\d+) epoch (\d+)$", re.M)
EMIT_LINE = re.compile(r"^\[rank 0\] (?:GENERATION (\d+) .*|EMIT chunk (\d+) epoch (\d+) unix_ms \d+)$", re.M)


class Stream:
    """What the job's output says: each rank's pid and start per generation, and Stage 0's emits."""

    def __init__(self, stdout: str) -> None:
        self.pids: Dict[Tuple[int, int], int] = {}  # (rank, generation) -> pid
        self.starts: Dict[int, Tuple[int, int]] = {}  # generation -> (next_chunk, epoch)
        for rank, generation, pid, chunk, epoch in GENERATION_LINE.findall(stdout):
            self.pids[(int(rank), int(generation))] = int(pid)
            self.starts[int(generation)] = (int(chunk), int(epoch))
        self.emits: List[Tuple[int, int, int]] = []  # (generation, chunk, epoch) in emit order
        generation = -1
        for gen, chunk, epoch in EMIT_LINE.findall(stdout):
            if gen:
                generation = int(gen)
            else:
                self.emits.append((generation, int(chunk), int(epoch)))


class TorchRecovery(JobTestCase):
    def recover(self, inject: str, restarted: List[int], nproc: int = 3) -> Stream:
        job = launch(self.case_dir, [PYTHON, STREAM, *ARGS, "--inject", inject], nproc=nproc, bound_s=BOUND_S,
                     extra=["--on-fault", "restart"])
        context = f"{job.describe()}\n--- stdout (tail) ---\n{job.stdout[-4000:]}"
        self.assertEqual(job.exit_code, 0, context)
        recoveries = job.launch["recoveries"]
        self.assertEqual(len(recoveries), 1, f"{recoveries}\n{context}")
        self.assertEqual(recoveries[0]["generation"], 1, recoveries)
        self.assertEqual(sorted(recoveries[0]["restarted_ranks"]), restarted, f"{recoveries}\n{context}")
        stream = Stream(job.stdout)
        for rank in range(nproc):
            before, after = stream.pids[(rank, 0)], stream.pids[(rank, 1)]
            if rank in restarted:
                self.assertNotEqual(before, after, f"rank {rank} died and was started again")
            else:
                self.assertEqual(before, after, f"rank {rank} survived: it keeps its process and its model")
        # Every chunk emitted exactly once, in order; generation 1 starts right
        # after the last chunk generation 0 emitted, under the next epoch.
        chunks = [chunk for _, chunk, _ in stream.emits]
        self.assertEqual(chunks, list(range(CHUNKS)), stream.emits)
        last = [(chunk, epoch) for generation, chunk, epoch in stream.emits if generation == 0][-1]
        self.assertEqual(stream.starts[1], (last[0] + 1, last[1] + 1), stream.emits)
        self.assertTrue(all(epoch == stream.starts[1][1] for generation, _, epoch in stream.emits if generation == 1))
        # The ended generation's dumps stay where the doctor reads them.
        self.assertTrue(os.path.isdir(os.path.join(job.job_dir, "dumps")), job.describe())
        return stream

    def test_kill9_of_a_mesh_worker_restarts_only_it(self):
        self.recover("kill:2:5", restarted=[2])

    def test_kill9_of_the_mesh_leader_restarts_only_it(self):
        self.recover("kill:1:5", restarted=[1])

    def test_kill9_of_stage0_resumes_after_its_last_emit(self):
        self.recover("kill:0:6", restarted=[0])

    def test_stalled_worker_ends_the_generation_and_no_process(self):
        self.recover("stall:2:5", restarted=[])


if __name__ == "__main__":
    unittest.main()
