"""A rank of the fatal-path cases (test_fatal.py), run under `lockstep launch`; needs no torch.

Usage: fatal_rank.py CASE
  gil       rank 0 blocks inside a C call that holds the GIL (a catastrophic
            regex) under lockstep.watch(timeout=0.5): the watchdog must still
            end it, with every Python thread's stack beside the dump
  raise     rank 0 raises an uncaught LockstepError("plan"); rank 1 waits
  crash     rank 0 raises an uncaught ZeroDivisionError; rank 1 waits
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time

import lockstep

LONG_SLEEP_S = 60.0


def helper_thread_body(ready: threading.Event) -> None:
    ready.set()
    while True:  # a second Python thread, so the stack file must show both
        time.sleep(0.01)


def main() -> int:
    case = sys.argv[1]
    rt = lockstep.init(timeout=5.0)
    lockstep.set_phase("control")
    ready = threading.Event()
    threading.Thread(target=helper_thread_body, args=(ready,), name="helper", daemon=True).start()
    ready.wait()
    ready_file = os.path.join(rt.job_dir, "rank-1-waiting")
    if rt.rank != 0:
        with lockstep.watch("waiting for rank 0", timeout=LONG_SLEEP_S):
            open(ready_file, "w").close()
            time.sleep(LONG_SLEEP_S)
        return 0
    if rt.world_size > 1:
        # Fail only once rank 1 waits under lockstep (its fatal path installed).
        with lockstep.watch("rank 1 to start waiting", timeout=30.0):
            while not os.path.exists(ready_file):
                time.sleep(0.01)
    if case == "gil":
        with lockstep.watch("catastrophic regex", timeout=0.5):
            re.match(r"(a+)+$", "a" * 64 + "b")  # GIL_HOLDING_CALL: exponential, never releases the GIL
    elif case == "raise":
        raise lockstep.LockstepError("observed 3 generator calls, expected 2", "plan", 34)
    elif case == "crash":
        print(1 / 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
