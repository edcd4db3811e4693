"""The Python package's fatal path under `lockstep launch` (label python): deadlines, stacks, exit codes."""

from __future__ import annotations

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HERE, PYTHON, JobTestCase, launch  # noqa: E402

SCRIPT = os.path.join(HERE, "fatal_rank.py")
BOUND_S = 60.0


def line_of(marker: str) -> int:
    with open(SCRIPT) as f:
        for number, line in enumerate(f, start=1):
            if marker in line:
                return number
    raise AssertionError(f"{marker} not in {SCRIPT}")


class FatalPath(JobTestCase):
    def test_watch_expiry_ends_a_rank_stuck_in_a_c_call_that_holds_the_gil(self):
        job = launch(self.case_dir, [PYTHON, SCRIPT, "gil"], nproc=1, bound_s=BOUND_S)
        self.assertEqual(job.exit_code, 20, job.describe())
        dump = job.dump(0)
        self.assertEqual(dump["reason"]["code"], "timeout")
        self.assertIn("catastrophic regex", dump["reason"]["message"])
        with open(os.path.join(job.job_dir, "dumps", "rank-0.pystacks.txt")) as f:
            stacks = f.read()
        # faulthandler's format: every thread, innermost frame first.
        self.assertGreaterEqual(stacks.count("Thread 0x"), 2, stacks)
        self.assertIn(f'File "{SCRIPT}", line {line_of("GIL_HOLDING_CALL")} in main', stacks)
        self.assertIn("in helper_thread_body", stacks)

    def test_uncaught_lockstep_error_ends_the_rank_with_its_code_and_stops_the_peer(self):
        job = launch(self.case_dir, [PYTHON, SCRIPT, "raise"], nproc=2, bound_s=BOUND_S)
        self.assertEqual(job.exit_code, 34, job.describe())  # plan
        ranks = {rank["rank"]: rank for rank in job.launch["ranks"]}
        # Stopped by rank 0's poison mark or the launcher's SIGTERM, whichever
        # came first — not by its own 60 s watch — and dumped on the way out.
        self.assertIn(ranks[1]["code"], (21, 143), job.describe())
        self.assertIn("rank-1.json", job.dumps())
        verdict = job.doctor()["primary"]
        self.assertEqual(verdict["ranks"], [0], verdict)
        self.assertIn("observed 3 generator calls", json.dumps(verdict))

    def test_uncaught_exception_dumps_and_exits_1(self):
        job = launch(self.case_dir, [PYTHON, SCRIPT, "crash"], nproc=2, bound_s=BOUND_S)
        self.assertEqual(job.exit_code, 1, job.describe())
        dump = job.dump(0)
        self.assertEqual(dump["reason"]["code"], "uncaught_exception")
        self.assertIn("ZeroDivisionError", dump["reason"]["message"])


if __name__ == "__main__":
    unittest.main()
