#!/usr/bin/env python3
"""Fault -> first chunk emitted after it: warm recovery vs exit and full restart.

Runs the reference job (`lockstep run`, tiny model on gloo by default) N
times per fault with `--on-fault restart` and reads the summary's `resume_ms`:
from the launcher beginning the recovery (it sees a death at once, a
deadline's poison mark within 20 ms) to the first chunk the new generation
emitted. The baseline is the same fault under `--on-fault exit`: the job ends,
a fresh job is started at once, and the time runs from the failure (the
launcher's record of the first rank that ended) to the fresh job's first chunk
— exit, full restart and reload. Faults: `stage0` (C1: Stage 0 killed, its
replacement starts), `worker` (kill -9 of the mesh worker, restarted and
reloaded), `straggler` (the worker stopped past the deadline, then woken: no
process dies, every rank keeps its weights). Prints one table (median and p99
of each, and their ratio) and the command line that produced it.

Usage: python3 bench/recovery_time.py [--lockstep build/default/lockstep] [--faults 20]
       [--cold-faults N] [--kinds stage0,worker,straggler] [--job "--backend nccl --model dit14b-layer"]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB_FLAGS = ["--topology", "pp1", "--nproc", "3", "--chunks", "40", "--hard-cut-every", "0",
             "--decode-ms", "20", "--generate-ms", "20", "--deadline-ms", "1500"]
RUN_BOUND_S = 120
# The straggler stays stopped this many deadlines by default: past its peers'
# deadline (which begins the recovery), so (stop_deadlines - 1) deadlines of
# the straggler row are the worker still being stopped after the recovery began.
STOP_DEADLINES_DEFAULT = 1.5


def run_job(lockstep: str, extra: list[str]) -> dict:
    """Runs one job to its end; returns its --json output (success or failure)."""
    done = subprocess.run([lockstep, "run", "--json", *JOB_FLAGS, *extra], capture_output=True, text=True,
                          timeout=RUN_BOUND_S, check=False)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise SystemExit(f"lockstep run {' '.join(extra)}: no JSON (exit {done.returncode}): {done.stderr[-2000:]}") \
            from error


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rank_pid(job_dir: str, rank: int) -> int:
    """The pid of the job's process with RANK=<rank>, or -1."""
    needle = f"LOCKSTEP_JOB_DIR={job_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return -1


def fault_midstream(lockstep: str, rank: int, fault: str, extra: list[str],
                    stop_deadlines: float = STOP_DEADLINES_DEFAULT) -> tuple[dict, str]:
    """Starts a job and, once two chunks are out, kill -9s `rank` (fault "worker") or stops it
    for one deadline and a half (fault "straggler"); returns (the job's JSON, its directory)."""
    job_dir = tempfile.mkdtemp(prefix="lockstep-recovery-bench-")
    job = subprocess.Popen([lockstep, "run", "--json", *JOB_FLAGS, *extra, "--job-dir", job_dir],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    progress = Path(job_dir) / "progress"
    while time.monotonic() < deadline:
        text = progress.read_text() if progress.exists() else ""
        if text.split() and int(text.split()[0]) >= 2:
            break
        time.sleep(0.01)
    pid = rank_pid(job_dir, rank)
    if pid > 0 and fault == "worker":
        os.kill(pid, signal.SIGKILL)
    elif pid > 0:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(stop_deadlines * deadline_ms(extra) / 1000)  # the fault itself: stopped past the deadline
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # --on-fault exit: the launcher already stopped the job
    out, err = job.communicate(timeout=RUN_BOUND_S)
    try:
        return json.loads(out), job_dir
    except json.JSONDecodeError as error:
        raise SystemExit(f"no JSON from the job in {job_dir}: {err[-2000:]}") from error


def warm(lockstep: str, fault: str, stop_deadlines: float) -> float:
    """One fault under --on-fault restart: ms from the recovery's start to the first chunk after it."""
    if fault == "stage0":
        summary = run_job(lockstep, ["--on-fault", "restart", "--inject", "C1"])
    else:
        summary, _ = fault_midstream(lockstep, 2, fault, ["--on-fault", "restart"], stop_deadlines)
    if not summary.get("ok") or not summary.get("recoveries"):
        raise SystemExit(f"warm recovery of {fault} did not complete: {json.dumps(summary)[:2000]}")
    return float(summary["resume_ms"])


def cold(lockstep: str, fault: str, stop_deadlines: float) -> float:
    """The same fault under --on-fault exit, then a fresh job: ms from the death to its first chunk."""
    if fault == "stage0":
        failed = run_job(lockstep, ["--inject", "C1"])
        job_dir = failed["job_dir"]
    else:
        failed, job_dir = fault_midstream(lockstep, 2, fault, [], stop_deadlines)
    launch = json.loads((Path(job_dir) / "launch.json").read_text())
    cause = launch["ranks"][launch["cause_rank"]]
    died_unix_ms = launch["started_unix_ms"] + cause["ended_after_ms"]
    fresh = run_job(lockstep, [])
    if not fresh.get("ok"):
        raise SystemExit(f"the restarted job failed: {json.dumps(fresh)[:2000]}")
    return float(fresh["first_emit_unix_ms"] - died_unix_ms)


FAULTS = {"stage0": "Stage 0 killed (C1), replaced", "worker": "mesh worker killed (kill -9), restarted",
          "straggler": "mesh worker stopped past the deadline, then woken (no process dies)"}



def deadline_ms(extra: list[str]) -> int:
    flags = JOB_FLAGS + extra
    return int(flags[len(flags) - 1 - flags[::-1].index("--deadline-ms") + 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lockstep", default="build/default/lockstep")
    parser.add_argument("--faults", type=int, default=20, help="warm recoveries per fault (>= 20 for the report)")
    parser.add_argument("--cold-faults", type=int, default=None, help="exit + restart runs per fault (default: --faults)")
    parser.add_argument("--kinds", default="stage0,worker,straggler", help="faults to run, comma-separated")
    parser.add_argument("--job", default="", help="more `lockstep run` flags (e.g. --backend nccl --model dit14b-layer)")
    parser.add_argument("--stop-deadlines", type=float, default=STOP_DEADLINES_DEFAULT,
                        help="how long the straggler stays stopped, in deadlines (> 1)")
    args = parser.parse_args()
    more = args.job.split()
    for flag, value in zip(more[0::2], more[1::2]):  # "--flag value" pairs replace the default's
        if flag in JOB_FLAGS:
            JOB_FLAGS[JOB_FLAGS.index(flag) + 1] = value
        else:
            JOB_FLAGS.extend([flag, value])
    cold_faults = args.faults if args.cold_faults is None else args.cold_faults
    rows = []
    for fault in args.kinds.split(","):
        warm_ms = [warm(args.lockstep, fault, args.stop_deadlines) for _ in range(args.faults)]
        cold_ms = [cold(args.lockstep, fault, args.stop_deadlines) for _ in range(cold_faults)]
        rows.append((FAULTS[fault], warm_ms, cold_ms))
    print(f"command: python3 bench/recovery_time.py --lockstep {args.lockstep} --faults {args.faults} "
          f"--cold-faults {cold_faults} --kinds {args.kinds} --stop-deadlines {args.stop_deadlines}" +
          (f" --job '{args.job}'" if args.job else ""))
    print(f"job: lockstep run {' '.join(JOB_FLAGS)} (file store)")
    print("| fault | warm recovery: median / p99 ms | exit + full restart: median / p99 ms | median ratio |")
    print("|---|---|---|---|")
    for what, warm_ms, cold_ms in rows:
        warm_cell = f"{statistics.median(warm_ms):.0f} / {percentile(warm_ms, 0.99):.0f}"
        if not cold_ms:
            print(f"| {what} | {warm_cell} | not run | |")
            continue
        ratio = statistics.median(cold_ms) / statistics.median(warm_ms)
        print(f"| {what} | {warm_cell} | {statistics.median(cold_ms):.0f} / {percentile(cold_ms, 0.99):.0f} | "
              f"{ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
