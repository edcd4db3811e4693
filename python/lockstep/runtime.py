"""The guard of one rank: lockstep.init(), watch(), phase().

:func:`init` builds, from the rank environment that ``lockstep launch`` (or
torchrun) sets, lockstep's per-process guard: the job store with its token
and generation, the flight recorder, the watchdog thread and the fatal path.
From then on:

* every :func:`watch` block and every guarded collective runs under a
  deadline the watchdog enforces without the GIL;
* expiry, an uncaught exception, or a peer's poison mark end the rank the
  same bounded way: every Python thread's stack written beside the dump
  (``dumps/rank-R.pystacks.txt``, even while another thread holds the GIL
  inside a C call), the flight-recorder dump (``dumps/rank-R.json``), a
  poison mark that stops the peers, no further guarded call, and ``_exit``
  with lockstep's exit code within a hard deadline (torch's communicators go
  with the process: torch has no abort callable without the GIL).
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from types import TracebackType
from typing import Dict, Mapping, Optional, Sequence, Tuple, Type

from . import _core
from ._errors import LockstepError, error

# faulthandler writes every Python thread's stack when the fatal path raises
# this signal (a real-time one, so it never collides with an application's).
STACK_SIGNAL = signal.SIGRTMIN + 6

_lock = threading.Lock()
_runtime: Optional["Runtime"] = None


class Runtime:
    """The per-process guard made by :func:`init` (one per process).

    ``core`` is the guard of the current generation of the job; under warm
    recovery (:func:`lockstep.run_generations`) each generation gets a new
    one, and the process, its threads and its weights stay.
    """

    def __init__(self, env: Dict[str, object], role: str, startup_ms: int, steady_ms: int, hard_exit_ms: int,
                 parent_pid: int, policy: Dict[str, list], stack_signal: int, stack_fd: int, on_fault: str) -> None:
        self.env = env
        self.role = role
        self.startup_ms = startup_ms
        self.steady_ms = steady_ms
        self.on_fault = on_fault
        self.hard_exit_ms = hard_exit_ms
        # Under warm recovery the fatal path ends the generation and the main
        # thread must unwind; one blocked in a Gloo op (Gloo cannot be aborted)
        # unwinds when the op's own timeout fires, at most the steady deadline
        # plus half the hard-exit deadline after the fault (lockstep.torch): so
        # the bound on unwinding grows by the steady deadline.
        self.unwind_ms = hard_exit_ms + (steady_ms if on_fault == "restart" else 0)
        self._parent_pid = parent_pid
        self._policy = policy
        self._stack_signal = stack_signal
        self._stack_fd = stack_fd
        self.core: "_core.ProcessRuntime" = self._make_core()

    def _make_core(self) -> "_core.ProcessRuntime":
        return _core.ProcessRuntime(self.env, self.role, self.startup_ms, self.steady_ms, self.unwind_ms,
                                    self._parent_pid, self._policy, self._stack_signal, self._stack_fd,
                                    self.on_fault == "restart")

    def _enter_generation(self, generation: int) -> None:
        """Replaces the guard of an ended generation by one of ``generation`` (joins it)."""
        self.core = None  # type: ignore[assignment]  # the old one's watchdog and hard-exit clock stop here
        self.env["generation"] = generation
        self.core = self._make_core()

    @property
    def rank(self) -> int:
        return int(self.env["rank"])

    @property
    def world_size(self) -> int:
        return int(self.env["world_size"])

    @property
    def local_rank(self) -> int:
        return int(self.env["local_rank"])

    @property
    def job_id(self) -> str:
        return str(self.env["job_id"])

    @property
    def job_dir(self) -> str:
        return str(self.env["job_dir"])

    @property
    def generation(self) -> int:
        """The job's generation this rank runs in (0 until a warm recovery)."""
        return int(self.env["generation"])

    @property
    def token_digest(self) -> int:
        """The frames' job-token field: refuses frames of another job and of another generation."""
        return _core.job_token_digest(str(self.env["job_token"]), self.generation)

    def deadline_ms(self) -> int:
        """The deadline a guarded call gets now: start-up until the first other phase."""
        return self.core.deadline_ms()  # the watchdog's own, read without a phase name

    def fail(self, code: str, message: str, exit_code: int) -> None:
        """Runs the fatal path now. Never returns, unless warm recovery is on and ``code`` is one a restart
        can cure: then the generation has ended (see :func:`lockstep.run_generations`)."""
        self.core.fail(code, message, exit_code)

    def dump(self, message: str = "requested") -> str:
        """Writes a flight-recorder dump now and returns its path; the rank goes on."""
        return self.core.dump_now(message)

    def close(self) -> None:
        """Stops the watchdog and the completion poller (clean end of the rank)."""
        if self._stack_signal > 0:
            faulthandler.unregister(self._stack_signal)
        os.close(self._stack_fd)
        self.core = None  # type: ignore[assignment]


def _torchrun_defaults() -> None:
    """Fills the LOCKSTEP_* variables from torchrun's when no lockstep launcher set them.

    The job id and token come from TORCHELASTIC_RUN_ID (one host, one job:
    mistakes, not attackers), the job directory from the temporary directory.
    """
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if "LOCKSTEP_JOB_ID" in os.environ or run_id is None:
        return
    job_id = "torchrun-" + re.sub(r"[^A-Za-z0-9._-]", "-", run_id)[:100]
    os.environ["LOCKSTEP_JOB_ID"] = job_id
    os.environ.setdefault("LOCKSTEP_JOB_TOKEN", "token-" + job_id)
    os.environ.setdefault("LOCKSTEP_JOB_DIR", os.path.join(tempfile.gettempdir(), "lockstep-" + job_id))
    os.environ.setdefault("LOCKSTEP_GENERATION", os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def _ms(seconds: float, what: str) -> int:
    if not seconds > 0:
        raise error("invalid_argument", f"{what} must be > 0 seconds, got {seconds!r}")
    return max(1, int(round(seconds * 1000)))


def init(*, role: str = "rank", startup_timeout: float = 30.0, timeout: float = 2.0,
         hard_exit_timeout: float = 1.5, phase_groups: Optional[Mapping[str, Sequence[str]]] = None,
         python_stacks: bool = True, fatal_on_uncaught: bool = True, on_fault: Optional[str] = None) -> Runtime:
    """Starts lockstep's guard for this rank and returns it.

    Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and LOCKSTEP_* (set by
    ``lockstep launch``; under torchrun the LOCKSTEP_* ones are derived from
    TORCHELASTIC_RUN_ID), proves the job token in the job store and starts
    the watchdog.

    Args:
      role: the dump's role ("stage0", "leader", "worker", "rank").
      startup_timeout: deadline (s) of every guarded block until the first
        phase other than "startup".
      timeout: the steady-state deadline (s) after that.
      hard_exit_timeout: from the first fatal trigger to ``_exit``, whatever hangs
        (under "restart", plus ``timeout``: the bound on unwinding the generation).
      phase_groups: which group names each phase allows, e.g.
        ``{"generator": ["mesh"], "control": ["world", "mesh", "boundary"]}``;
        default: lockstep's standard policy (startup/control: world, boundary,
        mesh; generator: mesh only; shutdown: world, boundary).
      python_stacks: write every Python thread's stack beside the dump.
      fatal_on_uncaught: an uncaught exception in any thread ends the rank
        through the fatal path (dump, poison, exit code) instead of leaving
        its peers to time out.
      on_fault: "exit" (a fault ends the job: crash > hang) or "restart"
        (warm recovery through :func:`lockstep.run_generations`); default:
        LOCKSTEP_ON_FAULT as ``lockstep launch --on-fault`` sets it, else "exit".

    Raises:
      LockstepError: "invalid_argument" naming a bad variable or argument,
        "job_token" when the store belongs to another job, "timeout" when
        rank 0 never published the token, "internal" when called twice.
    """
    global _runtime
    with _lock:
        if _runtime is not None:
            raise error("internal", "lockstep.init() was already called in this process")
        _torchrun_defaults()
        env = _core.read_rank_env()
        startup_ms = _ms(startup_timeout, "startup_timeout")
        steady_ms = _ms(timeout, "timeout")
        launcher = os.environ.get("LOCKSTEP_LAUNCHER_PID")
        parent_pid = os.getppid() if launcher is not None and launcher == str(os.getppid()) else 0
        stack_fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        if python_stacks:
            faulthandler.register(STACK_SIGNAL, file=stack_fd, all_threads=True, chain=False)
        policy = {str(k): [str(g) for g in v] for k, v in (phase_groups or {}).items()}
        fault_policy = on_fault if on_fault is not None else os.environ.get("LOCKSTEP_ON_FAULT", "exit")
        if fault_policy not in ("exit", "restart"):
            raise error("invalid_argument", f"on_fault (or LOCKSTEP_ON_FAULT) must be 'exit' or 'restart', "
                                            f"got {fault_policy!r}")
        if fault_policy == "restart":
            # torch's NCCL watchdog may abort communicators but must not end the
            # process: lockstep decides what a fault ends (CleanUpOnly).
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
        try:
            _runtime = Runtime(env, role, startup_ms, steady_ms, _ms(hard_exit_timeout, "hard_exit_timeout"),
                               parent_pid, policy, int(STACK_SIGNAL) if python_stacks else -1, stack_fd,
                               fault_policy)
        except BaseException:
            if python_stacks:
                faulthandler.unregister(STACK_SIGNAL)
            os.close(stack_fd)
            raise
        if fatal_on_uncaught:
            sys.excepthook = _fatal_excepthook
            threading.excepthook = _fatal_thread_excepthook
        atexit.register(shutdown)
        return _runtime


def runtime() -> Runtime:
    """The runtime :func:`init` made; raises LockstepError("internal") before init."""
    current = _runtime
    if current is None:
        raise error("internal", "lockstep.init() has not been called in this process")
    return current


def shutdown() -> None:
    """Stops the guard (a clean end); idempotent. Runs at interpreter exit too."""
    global _runtime
    with _lock:
        current, _runtime = _runtime, None
    if current is not None:
        current.close()


def _fail_with(exc: BaseException, tb: Optional[TracebackType]) -> None:
    """The fatal path for ``exc``: a LockstepError keeps its code, anything else is "uncaught_exception".
    Returns only when warm recovery ends the generation instead of the process."""
    current = _runtime
    if current is None:
        return
    if isinstance(exc, LockstepError):
        current.fail(exc.code, str(exc), exc.exit_code)
        return
    text = "".join(traceback.format_exception(type(exc), exc, tb)).strip()
    current.fail("uncaught_exception", text[-4000:], 1)


def _fatal_excepthook(exc_type: Type[BaseException], exc: BaseException, tb: Optional[TracebackType]) -> None:
    sys.__excepthook__(exc_type, exc, tb)
    if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
        _fail_with(exc, tb)


def _fatal_thread_excepthook(args: "threading.ExceptHookArgs") -> None:
    threading.__excepthook__(args)
    if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
        _fail_with(args.exc_value, args.exc_traceback)


class watch:
    """Puts a deadline on the block: ``with lockstep.watch("denoise step", timeout=1.5): ...``.

    On expiry the watchdog — a thread that never takes the GIL — runs the
    fatal path: every Python thread's stack and the flight recorder are
    dumped, peers are poisoned, guarded calls refused, and the process exits
    with code 20 (timeout) within the hard deadline, even if this block is
    stuck inside a C call that holds the GIL. ``timeout=None`` uses the
    current phase's deadline. Non-blocking to enter and leave (two atomics).
    """

    __slots__ = ("_what", "_timeout_ms", "_group", "_ticket", "_core")

    def __init__(self, what: str, timeout: Optional[float] = None, group: str = "") -> None:
        self._what = what
        self._timeout_ms = None if timeout is None else _ms(timeout, "timeout")
        self._group = group
        self._ticket: Optional[Tuple[int, int]] = None
        self._core: Optional["_core.ProcessRuntime"] = None

    def __enter__(self) -> "watch":
        current = runtime()
        timeout_ms = self._timeout_ms if self._timeout_ms is not None else current.deadline_ms()
        self._core = current.core  # the generation's guard that armed it disarms it
        self._ticket = self._core.arm(self._what, timeout_ms, self._group)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ticket is not None and self._core is not None:
            self._core.disarm(self._ticket)
        self._ticket = None
        self._core = None


class phase:
    """The process-wide phase the guarded groups check: ``with lockstep.phase("generator"): ...``.

    Phases are "startup", "control", "generator" and "shutdown"; each allows
    the groups of the policy given to :func:`init` (by default only ``mesh``
    inside "generator", B2). Leaving "startup" switches deadlines from the
    start-up to the steady-state value. As a context manager the previous
    phase is restored on exit; :func:`set_phase` changes it for good.
    """

    __slots__ = ("_name", "_previous")

    def __init__(self, name: str) -> None:
        self._name = name
        self._previous: Optional[str] = None

    def __enter__(self) -> "phase":
        core = runtime().core
        self._previous = core.phase()
        core.set_phase(self._name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            runtime().core.set_phase(self._previous)


def set_phase(name: str) -> None:
    """Sets the process-wide phase (see :class:`phase`)."""
    runtime().core.set_phase(name)


def current_phase() -> str:
    """The process-wide phase now."""
    return runtime().core.phase()


def commit(what: str, group: str = "", detail: str = "") -> None:
    """Records a commitment point (a send after which peers block for more) in the flight recorder."""
    runtime().core.commit(what, group, detail)


def set_context(call_id: int, chunk_index: int, cache_epoch: int) -> None:
    """Stamps (call_id, chunk_index, cache_epoch) on every later flight-recorder event."""
    runtime().core.set_context(call_id, chunk_index, cache_epoch)
