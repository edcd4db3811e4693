"""Break-it cases in PyTorch (ctest label `torch`): real ranks of torch_rank.py under `lockstep launch`.

Each case asserts the job's exit code, that it ended within its bound (a
hang is a failure with the verdict and dumps), and the doctor's verdict.
torch 1.13 with Gloo on CI; the same script runs with NCCL on the GPU machines.
"""

from __future__ import annotations

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HERE, PYTHON, JobTestCase, launch  # noqa: E402

DEADLINE_S = 2.0  # torch_rank.DEADLINE_S
BOUND_S = 90.0    # whole job, start-up of torch in every rank included, on a loaded 2-core machine
RANK_SCRIPT = os.path.join(HERE, "torch_rank.py")


class TorchBreakit(JobTestCase):
    def run_case(self, case: str, culprit: int, nproc: int = 3):
        return launch(self.case_dir, [PYTHON, RANK_SCRIPT, case, str(culprit)], nproc=nproc, bound_s=BOUND_S)

    def assert_verdict(self, job, kind: str, ranks, **fields):
        verdict = job.doctor()["primary"]
        self.assertEqual(verdict["kind"], kind, f"{verdict}\n{job.describe()}")
        self.assertEqual(verdict["ranks"], ranks, f"{verdict}\n{job.describe()}")
        for name, value in fields.items():
            self.assertEqual(verdict[name], value, f"{name}: {verdict}")
        return verdict

    def test_ok_streams_with_checks_on(self):
        job = self.run_case("ok", culprit=-1)
        self.assertEqual(job.exit_code, 0, job.describe())

    def test_guarded_collective_returns_before_it_completed(self):
        job = self.run_case("async", culprit=-1, nproc=2)
        self.assertEqual(job.exit_code, 0, job.describe())
        self.assertIn("[rank 0] RETURNED_PENDING True IN_FLIGHT_AFTER 0 SUM 3.0", job.stdout, job.describe())
        if os.environ.get("LOCKSTEP_TEST_DEVICE") == "cuda":  # the mesh (rank 1 alone) on NCCL
            self.assertIn("[rank 1] MESH_RETURNED_PENDING True IN_FLIGHT_AFTER 0 SUM 1.0", job.stdout,
                          job.describe())

    def test_skipped_collective_is_a_hang_every_rank_leaves_within_the_deadline(self):
        job = self.run_case("skip", culprit=2)
        self.assertEqual(job.exit_code, 20, job.describe())  # rank 1 timed out in the all_reduce
        verdict = self.assert_verdict(job, "hang", [2], group="mesh", op="all_reduce")
        self.assertIn("never entered", verdict["summary"])
        with open(os.path.join(job.job_dir, "fault-time")) as f:
            fault = float(f.read())
        # From the skipped collective to the last rank gone: the peer's deadline
        # runs from when it entered the collective, then dump, poison, exit.
        self.assertLessEqual(job.last_rank_end_unix_s() - fault, DEADLINE_S + 1.0, job.describe())

    def test_b1_rank0_in_a_mesh_collective_is_an_error_not_a_silent_skip(self):
        job = self.run_case("b1", culprit=0)
        self.assertEqual(job.exit_code, 30, job.describe())  # membership
        verdict = self.assert_verdict(job, "wrong_group", [0])
        self.assertIn("not a member", verdict["summary"])

    def test_b2_world_collective_in_the_generator_phase(self):
        job = self.run_case("b2", culprit=2)
        self.assertEqual(job.exit_code, 31, job.describe())  # phase
        verdict = self.assert_verdict(job, "wrong_group", [2])
        self.assertIn("group 'world'", verdict["summary"])
        self.assertIn("phase generator", verdict["summary"])

    def test_b4_count_differs_on_one_rank(self):
        job = self.run_case("b4", culprit=2, nproc=4)
        self.assertNotEqual(job.exit_code, 0, job.describe())
        verdict = self.assert_verdict(job, "mismatch", [2], group="mesh", op="all_reduce")
        self.assertEqual(verdict["others"], [1, 3])
        self.assertIn("rank 2 called all_reduce(f32 x512)", verdict["details"])
        self.assertIn("ranks 1,3 called all_reduce(f32 x1024)", verdict["details"])

    def test_a5_corrupted_envelope_byte_is_refused_on_its_checksum(self):
        job = self.run_case("a5", culprit=0)
        self.assertEqual(job.exit_code, 10, job.describe())
        verdict = self.assert_verdict(job, "protocol", [1])
        self.assertIn("checksum", verdict["summary"])

    def test_d2_result_after_a_hard_cut_is_dropped_never_emitted(self):
        job = self.run_case("d2", culprit=1)
        self.assertEqual(job.exit_code, 0, job.describe())
        self.assertIn("[rank 0] EMITTED [(1, 100.0), (3, 102.0)] STALE 1", job.stdout, job.describe())

    def test_c1_kill9_of_a_rank_stops_every_rank(self):
        job = self.run_case("kill9", culprit=2)
        self.assertEqual(job.exit_code, 128 + 9, job.describe())
        verdict = self.assert_verdict(job, "crash", [2])
        self.assertIn("left no dump", verdict["summary"])
        with open(os.path.join(job.job_dir, "fault-time")) as f:
            fault = float(f.read())
        # A killed rank writes no poison: the launcher stops the others at once.
        self.assertLessEqual(job.last_rank_end_unix_s() - fault, DEADLINE_S + 1.0, job.describe())

    def test_h1_one_ranks_input_perturbed(self):
        job = self.run_case("h1", culprit=2)
        self.assertEqual(job.exit_code, 40, job.describe())
        verdict = job.doctor()["primary"]
        self.assertEqual(verdict["kind"], "digest", verdict)
        self.assertTrue(re.search(r"input digest differs across group 'mesh' \(culprit ranks \[2\]\)",
                                  verdict["summary"]), verdict)


if __name__ == "__main__":
    unittest.main()
