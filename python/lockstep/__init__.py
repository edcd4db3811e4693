"""lockstep for PyTorch: multi-rank inference that cannot hang silently or drift apart.

The adoption path, in a program started by ``lockstep launch --nproc N -- python3 app.py``::

    import lockstep, lockstep.torch as lt, torch.distributed as dist
    lockstep.init()                                  # watchdog, fatal path, flight recorder
    dist.init_process_group("nccl")                  # env:// as set by lockstep launch
    world = lt.world()
    mesh = lt.new_group("mesh", range(1, dist.get_world_size()))   # on every rank
    lt.install()                                     # plain dist.* calls are checked too
    with lockstep.phase("generator"), lockstep.watch("denoise step", timeout=1.5):
        mesh.all_reduce(x)                           # checked, ledgered, tracked
    mesh.verify()                                    # once per chunk: ledgers agree

Under ``lockstep launch --on-fault restart`` the program runs its per-generation
part through :func:`lockstep.run_generations` and keeps its weights across a
warm recovery (:mod:`lockstep.recovery`).

Modules: :mod:`lockstep.runtime` (init, watch, phase), :mod:`lockstep.recovery`
(run_generations), :mod:`lockstep.torch`
(guarded process groups), :mod:`lockstep.wire` (Envelope/Result codec),
:mod:`lockstep.channel` (shared-memory control channel), :mod:`lockstep.flow`
(acceptance rule, sequencer, overlap meter). Every error is a
:class:`LockstepError` carrying lockstep's error code and exit code.
"""

from ._errors import LockstepError
from .channel import ControlChannel, sweep_dead_rings
from .flow import Acceptance, OverlapMeter, Sequencer
from .recovery import Generation, StreamPosition, run_generations
from .runtime import commit, current_phase, init, phase, runtime, set_context, set_phase, shutdown, watch
from .wire import Codec, Decoded, Envelope, Plan, Result, TensorSpec, allocate, codec, payload_order

__all__ = [
    "Acceptance", "Codec", "ControlChannel", "Decoded", "Envelope", "Generation", "LockstepError", "OverlapMeter",
    "Plan", "Result", "Sequencer", "StreamPosition", "TensorSpec", "allocate", "codec", "commit", "current_phase",
    "init", "payload_order", "phase", "run_generations", "runtime", "set_context", "set_phase", "shutdown",
    "sweep_dead_rings", "watch",
]
