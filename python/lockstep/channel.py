"""The shared-memory control channel between the ranks of one host (SPEC §4A).

One writer, up to 8 readers, every reader receives every frame in order; a
full ring is backpressure; every wait is bounded and notices a dead peer.
The ring's name carries the job id and generation, so rings of another job or
of an earlier generation are never opened; rings a killed job left behind are
removed by the launcher, or — under torchrun — by the next ring created on
the host once every process that used them is dead.

A channel endpoint belongs to the thread that first uses it: a call from
another thread raises "ownership" naming both threads (A6). Under warm
recovery the fatal path cancels every channel of the process, so no rank
waits on a ring of an ended generation.
"""

from __future__ import annotations

from typing import Optional

from . import _core
from .runtime import runtime
from .wire import Codec, Decoded, Envelope, Result, decoded_envelope, decoded_result

SLOT_BYTES_DEFAULT = 16 * 1024
# How long a wait spins before it sleeps on the futex (per process). Longer
# spins deliver a frame sooner after an idle gap and cost that much CPU per
# wait; at most _core.SHM_SPIN_US_MAX.
SPIN_US_DEFAULT = _core.SHM_SPIN_US_DEFAULT


class ControlChannel:
    """One endpoint (the writer or one reader) of a named control ring."""

    def __init__(self, endpoint: "_core.ChannelEndpoint", ring: "_core.ShmRing") -> None:
        self._endpoint = endpoint
        self._ring = ring
        # Under warm recovery the fatal path cancels it: waits on it end at once ("aborted"), host-wide.
        endpoint.cancel_on_fault(runtime().core)

    @classmethod
    def create(cls, name: str, readers: int, slots: int = 4, slot_bytes: int = SLOT_BYTES_DEFAULT,
               spin_us: int = SPIN_US_DEFAULT) -> "ControlChannel":
        """Creates the ring and returns its writer (call on the writing rank, before readers open)."""
        current = runtime()
        ring = _core.ShmRing.create(current.job_id, current.generation, name, readers, slots, slot_bytes, spin_us)
        return cls(_core.ChannelEndpoint.writer(ring), ring)

    @classmethod
    def open(cls, name: str, reader: int, readers: int, slots: int = 4, slot_bytes: int = SLOT_BYTES_DEFAULT,
             timeout: Optional[float] = None, spin_us: int = SPIN_US_DEFAULT) -> "ControlChannel":
        """Attaches reader ``reader`` (0-based) to the ring, waiting for its creator up to ``timeout`` s."""
        current = runtime()
        timeout_ms = current.startup_ms if timeout is None else max(1, int(timeout * 1000))
        ring = _core.ShmRing.open(current.job_id, current.generation, name, readers, slots, slot_bytes, spin_us,
                                  timeout_ms)
        return cls(_core.ChannelEndpoint.reader(ring, reader), ring)

    def publish(self, frame: bytes, timeout: Optional[float] = None) -> None:
        """Writer: delivers ``frame`` to every reader; blocks while the ring is full, at most ``timeout`` s."""
        self._endpoint.publish(frame, self._timeout_ms(timeout))

    def publish_envelope(self, codec: Codec, envelope: Envelope, timeout: Optional[float] = None) -> None:
        """Writer: preflights ``envelope`` (raising before anything is sent, like ``codec.encode_envelope``) and
        publishes the frame straight from the encoder's buffer, with no bytes object in between."""
        self._endpoint.publish_envelope(codec._envelope_args(envelope), self._timeout_ms(timeout))

    def publish_result(self, codec: Codec, result: Result, timeout: Optional[float] = None) -> None:
        """Writer: preflights and publishes ``result`` (like :meth:`publish_envelope`)."""
        self._endpoint.publish_result(codec._result_args(result), self._timeout_ms(timeout))

    def receive(self, timeout: Optional[float] = None) -> bytes:
        """Reader: the next frame, waiting at most ``timeout`` s (default: the current deadline)."""
        return self._endpoint.receive(self._timeout_ms(timeout))

    def receive_envelope(self, codec: Codec, timeout: Optional[float] = None) -> Decoded:
        """Reader: the next frame decoded and validated as an envelope — what ``codec.decode_envelope(receive())``
        returns, decoded where the ring copied it, with no bytes object in between."""
        return decoded_envelope(self._endpoint.receive_envelope(self._timeout_ms(timeout), codec.token_digest,
                                                                codec.version))

    def receive_result(self, codec: Codec, timeout: Optional[float] = None) -> Decoded:
        """Reader: the next frame decoded and validated as a result (like :meth:`receive_envelope`)."""
        return decoded_result(self._endpoint.receive_result(self._timeout_ms(timeout), codec.token_digest,
                                                            codec.version))

    def cancel(self) -> None:
        """Makes every pending and later publish/receive on this ring fail promptly ("aborted")."""
        self._endpoint.cancel()

    @property
    def segment_name(self) -> str:
        return self._ring.segment_name

    @staticmethod
    def _timeout_ms(timeout: Optional[float]) -> int:
        return runtime().deadline_ms() if timeout is None else max(1, int(timeout * 1000))


def sweep_dead_rings() -> int:
    """Removes /dev/shm rings of lockstep whose every owner is dead; returns how many."""
    return _core.sweep_dead_shm_rings()
