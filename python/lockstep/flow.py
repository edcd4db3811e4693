"""Idempotency and overlap for a PyTorch pipeline (SPEC §4D, §4E).

* :class:`Acceptance` — Stage 0's rule for results: epoch fence, the next
  expected call_id or a bounded reorder window; stale and duplicate results
  are dropped and counted, regressions raise "stale_work"; every accepted
  result is released exactly once, in call_id order.
* :class:`Sequencer` — the mesh's rule for envelopes: call_id strictly +1, a
  resend of the last envelope is dropped without re-applying anything,
  anything else raises "stale_work".
* :class:`OverlapMeter` — period, hidden time, mesh idle time and the
  OverlapScore from per-chunk stage times and emit timestamps.

The rules are lockstep's own C++ state machines, the same the C++ runtime
and the simulator drive.
"""

from __future__ import annotations

from typing import Any, Dict, Generic, List, Optional, Tuple, TypeVar

from . import _core

T = TypeVar("T")


class Acceptance(Generic[T]):
    """Stage 0's acceptance rule with storage for results held in the reorder window."""

    def __init__(self, cache_epoch: int = 0, reorder_window: int = 4) -> None:
        self._rule = _core.AcceptanceRule(cache_epoch, reorder_window)
        self._held: Dict[int, T] = {}

    def expect(self, call_id: int) -> None:
        """Registers that the envelope with ``call_id`` was sent and its result is awaited."""
        self._rule.expect(call_id)

    def offer(self, call_id: int, cache_epoch: int, result: T) -> List[Tuple[int, T]]:
        """Offers one result; returns the results released now, in call_id order (maybe none).

        Raises LockstepError("stale_work") for a regression, a result from a
        future epoch, or one beyond the reorder window.
        """
        verdict, released = self._rule.offer(call_id, cache_epoch)
        if verdict == "buffered":
            self._held[call_id] = result
        if verdict != "accepted":
            return []
        out = [(call_id, result)]
        out.extend((held_id, self._held.pop(held_id)) for held_id in released[1:])
        return out

    def begin_epoch(self, new_epoch: int) -> List[int]:
        """Hard cut: results of older epochs are dropped from now on; returns the abandoned call_ids."""
        self._held.clear()
        return self._rule.begin_epoch(new_epoch)

    @property
    def cache_epoch(self) -> int:
        return self._rule.cache_epoch

    @property
    def counters(self) -> Dict[str, int]:
        """accepted, stale_drops, duplicate_drops, reordered, discarded_in_flight."""
        return self._rule.counters


class Sequencer:
    """The mesh's envelope sequencer."""

    def __init__(self, first_call_id: int = 1, first_chunk_index: int = 0, first_cache_epoch: int = 0) -> None:
        self._sequencer = _core.EnvelopeSequencer(first_call_id, first_chunk_index, first_cache_epoch)

    def admit(self, call_id: int, cache_epoch: int, chunk_index: Optional[int], content_digest: int) -> bool:
        """True: apply this envelope; False: a resend of the last one, drop it and mutate nothing.

        ``chunk_index`` is None for non-INFER actions; ``content_digest`` tells
        a resend from a conflicting envelope (use the frame's body checksum).
        Raises LockstepError("stale_work") naming the ids otherwise.
        """
        verdict, _ = self._sequencer.admit(call_id, cache_epoch, chunk_index, content_digest)
        return verdict == "apply"

    @property
    def duplicate_drops(self) -> int:
        return self._sequencer.duplicate_drops


class OverlapMeter:
    """Per-chunk overlap arithmetic (no clock inside: feed it time.monotonic_ns() stamps)."""

    def __init__(self) -> None:
        self._meter = _core.OverlapMeter()

    def record(self, chunk_index: int, stage0_ms: float, stage1_ms: float, emitted_ns: int) -> Dict[str, Any]:
        """Records an emitted chunk; returns its period, hidden time, idle time and score (None for a segment's first)."""
        return self._meter.record(chunk_index, stage0_ms, stage1_ms, emitted_ns)

    def break_segment(self) -> None:
        """Hard cut: the next chunk starts a new segment (no period across a drain)."""
        self._meter.break_segment()

    def summary(self) -> Dict[str, Any]:
        """Distributions of stage times, period, hidden and idle time; ``overlap_score`` is the median score."""
        return self._meter.summary()
