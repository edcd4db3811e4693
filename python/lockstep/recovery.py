"""Warm recovery for a Python rank: :func:`run_generations` (SPEC §4C, docs/manual/C-warm-recovery.md).

Under ``lockstep launch --on-fault restart`` a fault a restart can cure (a
deadline, a dead or stopped peer, a backend or store failure) ends the
job's *generation*, not the job: the launcher restarts only the ranks that
died, and every surviving rank keeps its process, its weights and its
device context, discards its process groups — they are never rebuilt in
place — and joins the next generation. A deterministic fault (ledger,
plan, parity, digest, an exception of the application) ends the job as
under "exit"; so does a fault beyond the launcher's restart budget.

The program puts everything that belongs to one generation — process
groups, guarded groups, channels, the stream loop — in a function, and
keeps what must survive (the model) outside it::

    rt = lockstep.init()                      # LOCKSTEP_ON_FAULT from lockstep launch
    model = load_model()                      # loaded once, kept across generations

    def stream(generation: lockstep.Generation) -> None:
        lt.init_process_group("nccl")         # this generation's rendezvous
        ...                                   # groups, channels, the loop from generation.start
        generation.advance(chunk + 1, epoch)  # Stage 0, before each chunk leaves it

    lockstep.run_generations(stream, parity={"model": "dit14b"},
                             fingerprint=lambda: lt.fingerprint(model))

What happens at a fault: lockstep's fatal path dumps (into
``<job_dir>/generations/g<G>/dumps`` for a later generation), raises the
poison mark, refuses every guarded call, cancels the generation's control
channels and — on a helper thread, the moment the fatal path ran — aborts
torch's communicators where torch can (NCCL on torch 2.x), so the body's
blocked call returns and its exception unwinds to :func:`run_generations`.
That tears the generation down, waits for the launcher's next generation,
builds a new guard for it, re-runs the parity handshake (the weight
fingerprint recomputed, never cached) and calls the body again. The whole
unwinding is bounded (the hard-exit deadline plus the steady deadline: a call
blocked in Gloo, which cannot be aborted, returns when its group's own
timeout fires): a body that does not return in time is ended by ``_exit``,
and the launcher restarts it cold.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable, List, Mapping, NamedTuple, Optional, TypeVar

from . import _core
from ._errors import LockstepError, error
from .runtime import Runtime, _fail_with, runtime

T = TypeVar("T")

# What lockstep.torch (or another integration) does when a generation ends:
# `abort` on a helper thread the moment the fatal path aborted the generation
# (the body may be blocked in a call it unblocks), `teardown` on the main
# thread once the body has unwound.
_abort_hooks: List[Callable[[], None]] = []
_teardown_hooks: List[Callable[[], None]] = []
# Generations one process joins at most (the launcher's restart budget is
# the real bound; this one stops a loop if the launcher misbehaves).
GENERATIONS_PER_PROCESS_MAX = 1000


def on_generation_end(*, abort: Optional[Callable[[], None]] = None,
                      teardown: Optional[Callable[[], None]] = None) -> None:
    """Registers what an integration does when a generation ends (see the module's text)."""
    if abort is not None:
        _abort_hooks.append(abort)
    if teardown is not None:
        _teardown_hooks.append(teardown)


class StreamPosition(NamedTuple):
    """Where a generation's stream starts: the first chunk not yet emitted, and its epoch."""

    next_chunk: int
    epoch: int


class Generation:
    """One generation of the job, as :func:`run_generations` hands it to the body."""

    def __init__(self, current: Runtime) -> None:
        self._runtime = current
        self.number: int = current.generation
        next_chunk, epoch = current.core.generation_start()
        self.start = StreamPosition(int(next_chunk), int(epoch))

    @property
    def resumed(self) -> bool:
        """True after a recovery: Stage 0 resumes at ``start`` under a new epoch (a hard cut)."""
        return self.start != StreamPosition(0, 0)

    def advance(self, next_chunk: int, epoch: int) -> None:
        """Stage 0, just before a chunk leaves it, and at each hard cut: the emit fence and the position.

        Raises LockstepError("peer_failure") when this generation is no
        longer the job's current one (the launcher began the next: a peer
        died) — nothing of an ended generation may be emitted; the error ends
        the generation and the rank joins the next one. Otherwise records
        (``next_chunk``, ``epoch``) where a replacement Stage 0 resumes. A
        no-op under "exit" (nothing resumes).
        """
        if self._runtime.on_fault == "restart":
            self._runtime.core.advance_stream(int(next_chunk), int(epoch))

    def __repr__(self) -> str:
        return f"Generation({self.number}, start={tuple(self.start)})"


class _AbortWatcher:
    """The helper thread that runs the abort hooks the moment the fatal path aborted the generation."""

    def __init__(self, core: "_core.ProcessRuntime") -> None:
        self._core = core
        self._thread = threading.Thread(target=self._run, name="lockstep-generation-abort", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if not self._core.wait_generation_end():
            return  # released: the generation ended cleanly
        for hook in _abort_hooks:
            try:
                hook()
            except Exception:  # an abort that fails leaves the hard-exit deadline to end the rank
                pass

    def stop(self, timeout_s: float) -> None:
        self._core.release_waiters()
        self._thread.join(timeout_s)


def _handshake(core: "_core.ProcessRuntime", parity: Mapping[str, object],
               fingerprint: Optional[Callable[[], int]], timeout_ms: int) -> None:
    fields = {str(key): str(value) for key, value in parity.items()}
    weights = None if fingerprint is None else int(fingerprint()) & ((1 << 64) - 1)
    core.handshake(fields, weights, timeout_ms)


def run_generations(body: Callable[[Generation], T], *, parity: Optional[Mapping[str, object]] = None,
                    fingerprint: Optional[Callable[[], int]] = None) -> T:
    """Runs ``body`` once per generation of the job until one returns; returns what it returned.

    Before each call, every rank takes part in the generation's parity
    handshake: ``parity`` (names to values every rank must agree on; a
    difference raises LockstepError("parity") with a table naming each field
    on each rank) and ``fingerprint()`` (this rank's weights or shard, e.g.
    ``lockstep.torch.fingerprint(model)``, computed again at every
    handshake: it must equal the value this rank recorded at its first
    handshake of the job, whether the process survived or replaced a dead
    one). The launcher counts a rank as rejoined once it published its record.

    Under "exit" this is one call of ``body`` (after the handshake); an
    exception ends the rank through the fatal path as always. Under
    "restart" an exception from the body after a fault a restart can cure
    (see the module's text) ends the generation: the body's groups are torn
    down, the rank waits for the launcher's next generation (at most the
    start-up deadline; "timeout" when none begins: the launcher ended the
    job) and ``body`` runs again with it. Any other exception ends the rank
    as under "exit".
    """
    current = runtime()
    fields = dict(parity or {})
    for _ in range(GENERATIONS_PER_PROCESS_MAX):
        watcher = _AbortWatcher(current.core) if current.on_fault == "restart" else None
        try:
            _handshake(current.core, fields, fingerprint, current.startup_ms)
            result = body(Generation(current))
        except Exception as exc:
            if watcher is None:
                raise
            _fail_with(exc, exc.__traceback__)  # returns only when the fault ends the generation
        else:
            if watcher is not None:
                watcher.stop(current.unwind_ms / 1000.0)
            return result
        _end_generation(current, watcher)
    raise error("limit", f"more than {GENERATIONS_PER_PROCESS_MAX} generations in one process")


def _end_generation(current: Runtime, watcher: _AbortWatcher) -> None:
    """Tears the ended generation down and joins the next (the process and its weights stay)."""
    core = current.core
    core.await_fatal_path()
    watcher.stop(current.unwind_ms / 1000.0)
    for hook in _teardown_hooks:  # within the hard-exit deadline, still running
        hook()
    core.close()  # the deadline ends with the generation's guard
    ended = current.generation
    try:
        next_generation = _core.await_generation_after(current.env, ended, current.startup_ms)
    except LockstepError as exc:
        # No next generation: the launcher ended the job (its restart budget
        # was spent, or the fault could not be cured). The generation's dump
        # and poison mark are written; this rank ends with the code.
        sys.stderr.write(f"lockstep: rank {current.rank}: {exc}\n")
        raise SystemExit(exc.exit_code) from exc
    current._enter_generation(int(next_generation))
