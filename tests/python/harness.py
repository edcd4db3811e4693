"""Runs a program under `lockstep launch` with a hard bound and reads back what it left.

A job that outlives its bound is a hang: its process group is killed and the
test fails with the doctor's verdict and the dump files, never waits on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from dataclasses import dataclass, field
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
LOCKSTEP_BIN = os.environ.get("LOCKSTEP_BIN", "lockstep")
PYTHON = sys.executable


@dataclass
class Job:
    """What one launched job left behind."""

    exit_code: int
    wall_s: float
    job_dir: str
    stdout: str
    stderr: str
    launch: Dict = field(default_factory=dict)

    def doctor(self) -> Dict:
        """`lockstep doctor --json` over the job's dumps."""
        out = subprocess.run([LOCKSTEP_BIN, "doctor", "--json", self.job_dir], capture_output=True, text=True,
                             timeout=60)
        return json.loads(out.stdout)

    def dump(self, rank: int) -> Dict:
        """The flight-recorder dump rank `rank` wrote."""
        with open(os.path.join(self.job_dir, "dumps", f"rank-{rank}.json")) as f:
            return json.load(f)

    def dumps(self) -> List[str]:
        path = os.path.join(self.job_dir, "dumps")
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def last_rank_end_unix_s(self) -> float:
        """When the last rank of the job was gone (wall clock)."""
        ends = [rank["ended_after_ms"] for rank in self.launch["ranks"]]
        return (self.launch["started_unix_ms"] + max(ends)) / 1000.0

    def describe(self) -> str:
        return (f"exit {self.exit_code} after {self.wall_s:.1f} s in {self.job_dir}\n--- stderr (tail) ---\n"
                f"{self.stderr[-4000:]}\n--- dumps: {self.dumps()}")


def launch(case_dir: str, argv: List[str], nproc: int, bound_s: float, env: Optional[Dict[str, str]] = None,
           grace_ms: int = 2000, extra: Optional[List[str]] = None) -> Job:
    """Runs `lockstep launch --nproc N [extra] -- argv` in a fresh job directory under case_dir, at most bound_s."""
    job_dir = tempfile.mkdtemp(prefix="job-", dir=case_dir)
    command = [LOCKSTEP_BIN, "launch", "--nproc", str(nproc), "--job-dir", job_dir, "--grace-ms", str(grace_ms),
               *(extra or []), "--"] + argv
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, **(env or {})})
    try:
        stdout, stderr = process.communicate(timeout=bound_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        job = Job(-1, time.monotonic() - started, job_dir, stdout, stderr)
        verdict = subprocess.run([LOCKSTEP_BIN, "doctor", job_dir], capture_output=True, text=True, timeout=60)
        raise AssertionError(f"HANG: the job outlived its bound of {bound_s} s\n{verdict.stdout}{verdict.stderr}\n"
                             f"{job.describe()}")
    job = Job(process.returncode, time.monotonic() - started, job_dir, stdout, stderr)
    launch_json = os.path.join(job_dir, "launch.json")
    if os.path.exists(launch_json):
        with open(launch_json) as f:
            job.launch = json.load(f)
    return job


class JobTestCase(unittest.TestCase):
    """A TestCase with a scratch directory for its jobs (failure messages carry the verdict and dumps)."""

    def setUp(self) -> None:
        scratch = tempfile.TemporaryDirectory(prefix="lockstep-pytest-")
        self.addCleanup(scratch.cleanup)
        self.case_dir = scratch.name
