"""Guarded torch.distributed process groups (SPEC §4B through PyTorch).

Every collective and point-to-point call on a :class:`GuardedGroup` passes
lockstep's gate *before* torch sees it — this rank is a member (torch itself
silently skips a collective on a group the rank is not in, which is how rank 0
"joins" a mesh all_reduce in pp1 and hangs the mesh: B1), the process-wide
phase allows the group (B2), root/peer is valid, dtype and count are sane —
and is appended to the group's ledger and to the flight recorder. Completion
is tracked without a host wait: CUDA work by an event that lockstep's poller
thread queries, CPU (Gloo) work by its future; the watchdog enforces the
deadline from progress (the previous call's completion), not from enqueue.
:meth:`GuardedGroup.verify`, once per chunk, compares the ledger digests of
every member and names the first divergent call (B4).

Every rank calls :func:`new_group` for every group, members or not, in the
same order — as ``torch.distributed.new_group`` requires — and gets a
handle; a non-member's handle raises "membership" on any call instead of
skipping it. :func:`install` makes the plain ``torch.distributed`` functions
go through the same checks (``group=None`` is the guarded world group) and
refuses calls lockstep cannot check.

Works with torch 1.13 (Gloo) and 2.x (NCCL, Gloo).
"""

from __future__ import annotations

import atexit
import collections
import datetime
import os
import threading
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence

import torch
import torch.distributed as dist

from . import _core, recovery
from ._errors import LockstepError, error
from .runtime import runtime
from .wire import _DTYPE_NAMES

_OPS: Dict[str, int] = dict(_core.OPS)
# The dtypes lockstep checks, from the wire's one table, keyed for the hot path.
_DTYPES: Dict[torch.dtype, int] = {getattr(torch, torch_name): _core.DTYPES[name]
                                   for name, (torch_name, _) in _DTYPE_NAMES.items()}
_NO_PEER = -1
_U8 = _core.DTYPES["u8"]

# The torch functions, as imported: install() replaces the public names.
_torch_functions: Dict[str, Callable[..., Any]] = {}
_registry_lock = threading.Lock()
_groups_by_pg: Dict[int, "GuardedGroup"] = {}
_world: Optional["GuardedGroup"] = None
_next_lane = 0


def _original(name: str) -> Optional[Callable[..., Any]]:
    """torch's own function `name` (not install()'s replacement); None where this torch lacks it."""
    fn = _torch_functions.get(name)
    if fn is None and not _torch_functions.get("_installed"):
        fn = getattr(dist, name, None)
        if fn is not None:
            _torch_functions[name] = fn
    return fn


def _torch(name: str, *fallbacks: str) -> Callable[..., Any]:
    """torch's function `name`, else the first of `fallbacks` this torch has."""
    for candidate in (name,) + fallbacks:
        fn = _original(candidate)
        if fn is not None:
            return fn
    raise error("internal", f"torch.distributed.{name} does not exist in torch {torch.__version__}")


def _dtype(tensor: torch.Tensor, group: str, op: str) -> int:
    try:
        return _DTYPES[tensor.dtype]
    except KeyError:
        checked = ", ".join(str(d).replace("torch.", "") for d in _DTYPES)
        raise error("invalid_argument", f"group '{group}', op {op}: dtype {tensor.dtype} is not one lockstep "
                                        f"checks ({checked})") from None


class GuardedGroup:
    """A torch.distributed process group whose every call lockstep checks first.

    Ranks given to and taken by its methods (``src``, ``dst``) are global
    ranks, as in torch.distributed. Make one with :func:`new_group`,
    :func:`world` or :func:`guard`.
    """

    def __init__(self, name: str, ranks: Sequence[int], pg: Any) -> None:
        global _next_lane
        current = runtime()
        self.name = name
        self.ranks: List[int] = list(ranks)
        self._pg = pg  # None on a non-member
        self._core = current.core
        self.rank: Optional[int] = self.ranks.index(current.rank) if current.rank in self.ranks else None
        with _registry_lock:
            if _next_lane >= _core.LANES_MAX:
                raise error("limit", f"more than {_core.LANES_MAX} guarded groups in one process")
            self._lane = _next_lane
            _next_lane += 1
        # The gate checks a call's timeout and the tracker bounds a full-lane
        # wait with it; the watchdog's deadline comes from the phase.
        self._timeout_ms = max(current.startup_ms, current.steady_ms)
        # CUDA events recorded after calls, in tracking order; the oldest
        # (len - in_flight) completed and are reused, so none is created per call.
        self._events: Deque[Any] = collections.deque()
        self._free_events: List[Any] = []
        self._side_stream: Optional[Any] = None
        self._device = "cpu"
        if pg is not None and str(dist.get_backend(pg)).lower() == "nccl":
            self._device = "cuda"

    # -- properties -------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.ranks)

    @property
    def process_group(self) -> Any:
        """The torch process group (None on a non-member) — for reading, not for calls."""
        return self._pg

    def is_member(self) -> bool:
        return self.rank is not None

    def group_rank(self, global_rank: int) -> int:
        """The group rank of ``global_rank``; the group's size (out of range) when it is not a member,
        so the gate refuses it as an invalid root or peer, naming it."""
        try:
            return self.ranks.index(global_rank)
        except ValueError:
            return len(self.ranks)  # out of range: the gate refuses it as an invalid root/peer

    # -- the guarded path ---------------------------------------------------
    def _admit(self, op: int, dtype: int, count: int, peer: int) -> int:
        # torch owns the buffers: the gate is told they exist.
        return self._core.admit(self.name, op, dtype, count, peer, self._timeout_ms, True, True)

    def _event(self) -> Any:
        if not self._free_events:
            for _ in range(len(self._events) - self._core.in_flight(self._lane)):
                self._free_events.append(self._events.popleft())
        return self._free_events.pop() if self._free_events else torch.cuda.Event()

    def _run(self, op: int, dtype: int, count: int, peer: int, seq: int, cuda: bool, async_op: bool,
             issue: Callable[[bool], Any]) -> Any:
        """Issues the torch call and tracks its completion; returns what torch returns to the caller."""
        if cuda:
            # Issued exactly as the caller asked: a blocking NCCL call makes the
            # current stream wait for the collective (the host does not wait).
            work = self._issue(op, dtype, count, peer, seq, issue, async_op)
            event = self._event()
            if async_op:
                # The caller waits later; completion is observed on a side
                # stream that waits for the collective, never on the caller's.
                if self._side_stream is None:
                    self._side_stream = torch.cuda.Stream()
                with torch.cuda.stream(self._side_stream):
                    work.wait()
                    event.record()
            else:
                event.record()
            self._events.append(event)
            self._core.track_cuda_event(self._lane, self.name, op, dtype, count, peer, self._timeout_ms, seq,
                                        event.cuda_event)
            return work if async_op else None
        if async_op:
            work = self._issue(op, dtype, count, peer, seq, issue, True)
            flag = self._core.track_flag(self._lane, self.name, op, dtype, count, peer, self._timeout_ms, seq)
            try:
                work.get_future().then(lambda future: _settle(flag, future))
            except RuntimeError:
                # Gloo's p2p work of torch 1.13 has no future: completion is
                # seen when the caller waits (within the deadline).
                return _TrackedWork(work, flag, self.name, seq)
            return _TrackedWork(work, None, self.name, seq)
        report = self._core.report
        report(self.name, op, dtype, count, peer, self._timeout_ms, seq, "started", "")
        self._issue(op, dtype, count, peer, seq, issue, False)
        report(self.name, op, dtype, count, peer, self._timeout_ms, seq, "completed", "")
        return None

    def _issue(self, op: int, dtype: int, count: int, peer: int, seq: int, issue: Callable[[bool], Any],
               async_op: bool) -> Any:
        """The torch call; its failure is lockstep's "backend" error (a fault warm recovery can cure)."""
        try:
            return issue(async_op)
        except RuntimeError as exc:
            self._core.report(self.name, op, dtype, count, peer, self._timeout_ms, seq, "failed", str(exc)[:200])
            raise error("backend", f"group '{self.name}' seq {seq}: {exc}") from exc

    def _guarded(self, op_name: str, tensor: Optional[torch.Tensor], count: int, peer: int, async_op: bool,
                 issue: Callable[[bool], Any]) -> Any:
        op = _OPS[op_name]
        dtype = _dtype(tensor, self.name, op_name) if tensor is not None else _U8
        seq = self._admit(op, dtype, count, peer)
        return self._run(op, dtype, count, peer, seq, tensor is not None and tensor.is_cuda, async_op, issue)

    @staticmethod
    def _contiguous(tensor: torch.Tensor, what: str) -> None:
        if not tensor.is_contiguous():
            raise error("invalid_argument", f"{what} is not contiguous (lockstep ledgers flat buffers)")

    # -- collectives --------------------------------------------------------
    def all_reduce(self, tensor: torch.Tensor, op: Any = dist.ReduceOp.SUM, async_op: bool = False) -> Any:
        """torch.distributed.all_reduce on this group, checked first."""
        return self._guarded("all_reduce", tensor, tensor.numel(), _NO_PEER, async_op,
                             lambda a: _torch("all_reduce")(tensor, op=op, group=self._pg, async_op=a))

    def broadcast(self, tensor: torch.Tensor, src: int, async_op: bool = False) -> Any:
        """torch.distributed.broadcast from global rank ``src``, checked first."""
        return self._guarded("broadcast", tensor, tensor.numel(), self.group_rank(src), async_op,
                             lambda a: _torch("broadcast")(tensor, src=src, group=self._pg, async_op=a))

    def all_gather(self, tensor_list: List[torch.Tensor], tensor: torch.Tensor, async_op: bool = False) -> Any:
        """torch.distributed.all_gather, checked first (every output like ``tensor``)."""
        if len(tensor_list) != self.size or any(t.numel() != tensor.numel() or t.dtype != tensor.dtype
                                                for t in tensor_list):
            raise error("invalid_argument", f"group '{self.name}', op all_gather: needs {self.size} outputs "
                                            f"of {tensor.numel()} {tensor.dtype}")
        return self._guarded("all_gather", tensor, tensor.numel(), _NO_PEER, async_op,
                             lambda a: _torch("all_gather")(tensor_list, tensor, group=self._pg, async_op=a))

    def all_gather_into_tensor(self, output: torch.Tensor, input: torch.Tensor, async_op: bool = False) -> Any:
        """All-gather into one flat output of size * input.numel() elements, checked first."""
        self._contiguous(output, "all_gather output")
        if output.numel() != input.numel() * self.size or output.dtype != input.dtype:
            raise error("invalid_argument", f"group '{self.name}', op all_gather: output of {output.numel()} "
                                            f"{output.dtype} for {self.size} x {input.numel()} {input.dtype}")
        fn = _torch("all_gather_into_tensor", "_all_gather_base")
        return self._guarded("all_gather", input, input.numel(), _NO_PEER, async_op,
                             lambda a: fn(output, input, group=self._pg, async_op=a))

    def reduce_scatter(self, output: torch.Tensor, input_list: List[torch.Tensor], op: Any = dist.ReduceOp.SUM,
                       async_op: bool = False) -> Any:
        """torch.distributed.reduce_scatter, checked first (count = elements each rank receives)."""
        if len(input_list) != self.size or any(t.numel() != output.numel() for t in input_list):
            raise error("invalid_argument", f"group '{self.name}', op reduce_scatter: needs {self.size} inputs "
                                            f"of {output.numel()} elements")
        return self._guarded("reduce_scatter", output, output.numel(), _NO_PEER, async_op,
                             lambda a: _torch("reduce_scatter")(output, input_list, op=op, group=self._pg,
                                                                async_op=a))

    def reduce_scatter_tensor(self, output: torch.Tensor, input: torch.Tensor, op: Any = dist.ReduceOp.SUM,
                              async_op: bool = False) -> Any:
        """Reduce-scatter of one flat input of size * output.numel() elements, checked first."""
        self._contiguous(input, "reduce_scatter input")
        if input.numel() != output.numel() * self.size:
            raise error("invalid_argument", f"group '{self.name}', op reduce_scatter: input of {input.numel()} "
                                            f"elements for {self.size} x {output.numel()}")
        fn = _torch("reduce_scatter_tensor", "_reduce_scatter_base")
        return self._guarded("reduce_scatter", output, output.numel(), _NO_PEER, async_op,
                             lambda a: fn(output, input, op=op, group=self._pg, async_op=a))

    def barrier(self) -> None:
        """A barrier on this group (a host-side synchronisation point), checked first."""
        # Gloo and NCCL both implement barrier as a small collective.
        self._guarded("barrier", None, 0, _NO_PEER, False,
                      lambda a: _torch("barrier")(group=self._pg, async_op=a))

    # -- point to point -----------------------------------------------------
    def send(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> None:
        """torch.distributed.send to global rank ``dst``, checked first."""
        self._guarded("send", tensor, tensor.numel(), self.group_rank(dst), False,
                      lambda a: _p2p("send", "isend", tensor, dst, self._pg, tag, a))

    def recv(self, tensor: torch.Tensor, src: int, tag: int = 0) -> None:
        """torch.distributed.recv from global rank ``src`` (a specific one: lockstep ledgers its peer)."""
        self._guarded("recv", tensor, tensor.numel(), self.group_rank(src), False,
                      lambda a: _p2p("recv", "irecv", tensor, src, self._pg, tag, a))

    def isend(self, tensor: torch.Tensor, dst: int, tag: int = 0) -> Any:
        self._contiguous(tensor, "isend tensor")
        return self._guarded("send", tensor, tensor.numel(), self.group_rank(dst), True,
                             lambda a: _torch("isend")(tensor, dst, group=self._pg, tag=tag))

    def irecv(self, tensor: torch.Tensor, src: int, tag: int = 0) -> Any:
        self._contiguous(tensor, "irecv tensor")
        return self._guarded("recv", tensor, tensor.numel(), self.group_rank(src), True,
                             lambda a: _torch("irecv")(tensor, src, group=self._pg, tag=tag))

    def batch_isend_irecv(self, ops: Sequence[Any]) -> List[Any]:
        """torch.distributed.batch_isend_irecv of P2POp(isend/irecv, tensor, peer) on this group.

        Every op passes the gate (in list order) before any is issued; the
        batch is issued as one torch call.
        """
        raw: List[Any] = []
        calls = []
        for p2p in ops:
            is_send = getattr(p2p.op, "__name__", "") == "isend"
            op_name = "send" if is_send else "recv"
            call = (_OPS[op_name], _dtype(p2p.tensor, self.name, op_name), p2p.tensor.numel(),
                    self.group_rank(p2p.peer))
            calls.append((call, self._admit(*call)))
            raw.append(_torch("P2POp")(_torch("isend") if is_send else _torch("irecv"), p2p.tensor, p2p.peer,
                                       group=self._pg, tag=getattr(p2p, "tag", 0)))
        try:
            works = _torch("batch_isend_irecv")(raw)
        except RuntimeError as exc:
            raise error("backend", f"group '{self.name}' batch_isend_irecv of {len(raw)} ops: {exc}") from exc
        cuda = any(p2p.tensor.is_cuda for p2p in ops)
        tracked = [self._run(*call, seq, cuda, True, lambda a, w=work: w)
                   for (call, seq), work in zip(calls, works if len(works) == len(calls) else [works[0]] * len(calls))]
        return tracked[:len(works)]  # one per work torch returned (a coalesced batch returns one)

    # -- payloads and checks ---------------------------------------------------
    def broadcast_payload(self, tensors: Iterable[torch.Tensor], src: int) -> None:
        """Broadcasts the tensors of a frame's manifest from ``src``, in manifest order."""
        for tensor in tensors:
            self.broadcast(tensor, src)

    def verify(self, **digests: int) -> None:
        """Compares this group's ledger and ``digests`` across every member (once per chunk, on every member).

        ``digests`` names per-chunk digests every member must agree on, e.g.
        ``mesh.verify(input=lockstep.torch.digest(latents), kv_state=kv_digest)``
        (H1, F2). Raises LockstepError("ledger") naming the first divergent
        call — group, seq, op, dtype, count and each side — when a rank
        issued a collective the others did not, or with another count or
        dtype; LockstepError("digest") naming the digest, the culprit ranks
        and every value otherwise. Costs one all_gather of a few int64 per
        rank (two on a ledger mismatch). Groups whose members exchange
        point-to-point traffic among a subset only are not comparable this
        way (only the endpoints ledger a p2p).
        """
        named = [(name.replace("_", "-") + " digest", int(value) & ((1 << 64) - 1))
                 for name, value in digests.items()]
        self._core.check_group_digests(self.name, self.ranks, named, self._gather_words)

    def _gather_words(self, mine: List[int]) -> List[List[int]]:
        words = torch.tensor([w - (1 << 64) if w >= (1 << 63) else w for w in mine], dtype=torch.int64,
                             device=self._device)
        # A list all_gather: Gloo of torch 1.13 has no flat all_gather.
        rows_out = [torch.empty_like(words) for _ in range(self.size)]
        self.all_gather(rows_out, words)
        rows = [row.tolist() for row in rows_out]
        return [[w & ((1 << 64) - 1) for w in row] for row in rows]

    def ledger(self) -> Dict[str, int]:
        """This rank's ledger of the group: next_seq and digest."""
        next_seq, digest = self._core.ledger(self.name)
        return {"next_seq": next_seq, "digest": digest}

    def synchronize(self, timeout: Optional[float] = None) -> None:
        """Blocks until every call issued on this group so far completed (bounded; raises "timeout")."""
        timeout_ms = runtime().deadline_ms() if timeout is None else max(1, int(timeout * 1000))
        self._core.wait_lane(self._lane, timeout_ms)

    def in_flight(self) -> int:
        """Calls issued on this group whose completion has not been observed yet."""
        return self._core.in_flight(self._lane)

    def __repr__(self) -> str:
        return f"GuardedGroup({self.name!r}, ranks={self.ranks}, member={self.is_member()})"


def digest(tensor: torch.Tensor) -> int:
    """lockstep's tensor digest (``digest_tensor``: XXH64 per 4 KiB block, folded) of a tensor's bytes.

    The same value lockstep's runtime computes for a chunk's tensors. A CUDA
    tensor is copied to the host first: the package does not link CUDA
    kernels (the runtime digests on the GPU itself)."""
    host = tensor.detach().contiguous().cpu()
    return _core.digest_tensor(host.data_ptr(), host.numel() * host.element_size())


def _p2p(blocking: str, nonblocking: str, tensor: torch.Tensor, peer: int, pg: Any, tag: int,
         async_op: bool) -> Any:
    if async_op:
        return _torch(nonblocking)(tensor, peer, group=pg, tag=tag)
    return _torch(blocking)(tensor, peer, group=pg, tag=tag)


class _TrackedWork:
    """A torch work handle whose wait() fails as lockstep's "backend" error (a fault lockstep saw,
    which warm recovery can cure) and, for work without a future, reports completion to the tracker."""

    def __init__(self, work: Any, flag: Any, group: str, seq: int) -> None:
        self._work = work
        self._flag = flag  # None: the work's future settles the tracker
        self._group = group
        self._seq = seq

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self._work.wait(*args, **kwargs)
        except RuntimeError as exc:
            if self._flag is not None:
                self._flag.set_failed(str(exc)[:200])
            raise error("backend", f"group '{self._group}' seq {self._seq}: {exc}") from exc
        if self._flag is not None:
            self._flag.set_done()
        return result

    def is_completed(self) -> bool:
        done = self._work.is_completed()
        if done and self._flag is not None:
            self._flag.set_done()
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._work, name)


def _settle(flag: Any, future: Any) -> None:
    try:
        future.wait()
    except Exception as exc:  # the work failed: the tracker fails the rank
        flag.set_failed(str(exc)[:200])
        return
    flag.set_done()


def _register(group: GuardedGroup) -> GuardedGroup:
    if group._pg is not None:
        with _registry_lock:
            _groups_by_pg[id(group._pg)] = group
    return group


def new_group(name: str, ranks: Sequence[int], backend: Optional[str] = None, **kwargs: Any) -> GuardedGroup:
    """``torch.distributed.new_group(ranks)`` under lockstep's guard, named ``name``.

    Every rank of the world must call it for every group, members or not, in
    the same order (torch's rule, and lockstep's B3): rank 0 of a pp job calls
    ``new_group("mesh", [1, 2])`` too. Returns a handle on every rank; on a
    non-member any call raises "membership" instead of being skipped. A Gloo
    group's ``timeout`` defaults to just after lockstep's steady-state deadline.
    """
    current = runtime()
    members = sorted(int(r) for r in ranks)
    _default_timeout(backend or dist.get_backend(), kwargs)
    pg = dist.new_group(ranks=members, backend=backend, **kwargs)
    current.core.add_group(name, members)
    return _register(GuardedGroup(name, members, pg if current.rank in members else None))


def world(name: str = "world") -> GuardedGroup:
    """The default (world) process group under lockstep's guard; made once per process."""
    global _world
    if _world is None:
        current = runtime()
        members = list(range(dist.get_world_size()))
        current.core.add_group(name, members)
        _world = _register(GuardedGroup(name, members, dist.group.WORLD))
    return _world


def guard(pg: Any, name: str, ranks: Optional[Sequence[int]] = None) -> GuardedGroup:
    """Wraps an existing process group. ``ranks`` (global) is needed where torch cannot tell them."""
    current = runtime()
    if ranks is None:
        get_ranks = getattr(dist, "get_process_group_ranks", None)
        if get_ranks is not None:
            ranks = get_ranks(pg)
        else:  # torch 1.13
            ranks = list(dist.distributed_c10d._pg_group_ranks[pg].keys())
    members = sorted(int(r) for r in ranks)
    current.core.add_group(name, members)
    return _register(GuardedGroup(name, members, pg if current.rank in members else None))


# -- generations (warm recovery, lockstep.run_generations) ----------------------

# Process groups of ended generations: never destroyed while the process
# lives (a Gloo group's destructor joins a worker thread that may still sit in
# an op on a stopped peer until the group's timeout), bounded by the
# generations one process can join.
_ended_process_groups: List[Any] = []


def init_process_group(backend: str, *, timeout: Optional[float] = None, **kwargs: Any) -> None:
    """``torch.distributed.init_process_group`` for the current generation of the job.

    Generation 0 rendezvouses through ``env://`` as ``lockstep launch`` (or
    torchrun) set it up; a later generation through a store of its own in
    the job directory (``generations/g<G>/torch-store``), so a straggler of
    an earlier generation can never join it. ``timeout`` (s) is the
    backend's own; a Gloo group's defaults to just after lockstep's
    steady-state deadline (as in :func:`new_group`), so an op stuck on a
    stopped peer ends after lockstep's deadline fired, within the hard exit.
    """
    current = runtime()
    if timeout is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=timeout)
    _default_timeout(backend, kwargs)
    if current.generation == 0:
        dist.init_process_group(backend, init_method="env://", **kwargs)
        return
    directory = os.path.join(current.job_dir, "generations", f"g{current.generation}")
    os.makedirs(directory, exist_ok=True)
    store = dist.FileStore(os.path.join(directory, "torch-store"), current.world_size)
    dist.init_process_group(backend, store=store, rank=current.rank, world_size=current.world_size, **kwargs)


def _default_timeout(backend: str, kwargs: Dict[str, Any]) -> None:
    """A Gloo group's own timeout, unless the caller chose one: lockstep's steady-state deadline plus half
    the hard-exit deadline. Gloo cannot be aborted: an op stuck on a stopped peer must end after lockstep's
    deadline fired (so lockstep names the cause) and before the hard exit (so under warm recovery the
    rank unwinds and keeps its process). NCCL keeps torch's longer timeout: lockstep aborts it first."""
    if "timeout" not in kwargs and str(backend).lower() == "gloo":
        current = runtime()
        kwargs["timeout"] = datetime.timedelta(milliseconds=current.steady_ms + current.hard_exit_ms // 2)


def fingerprint(weights: Any) -> int:
    """The weights' fingerprint for the parity handshake: :func:`digest` of every tensor, folded in order.

    ``weights`` is a ``torch.nn.Module`` (its ``state_dict()``, in key
    order) or an iterable of tensors. Computed from the tensors' bytes each
    call (a CUDA tensor is copied to the host), never cached: a rank whose
    weights changed fails the next handshake.
    """
    tensors = weights.state_dict().values() if isinstance(weights, torch.nn.Module) else weights
    folded = 0
    for tensor in tensors:
        folded = _core.digest_combine(folded, digest(tensor))
    return folded


def _abort_generation() -> None:
    """On the recovery helper thread: aborts torch's communicators where torch can (NCCL, torch >= 2.x),
    so a call blocked on a dead or stopped peer returns."""
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if abort is None or not dist.is_initialized():
        return
    with _registry_lock:
        groups = [g._pg for g in _groups_by_pg.values() if g._pg is not dist.group.WORLD]
    for pg in groups + [None]:  # None: the default group
        try:
            abort(pg)
        except Exception:  # one group that cannot abort leaves the others to abort, and the hard-exit deadline
            pass


def _forget_generation() -> None:
    """After the body unwound: the ended generation's groups are discarded, never rebuilt in place."""
    global _world, _next_lane
    with _registry_lock:
        _ended_process_groups.extend(g._pg for g in _groups_by_pg.values())
        _groups_by_pg.clear()
        _world = None
        _next_lane = 0
    if dist.is_initialized():
        dist.destroy_process_group()


recovery.on_generation_end(abort=_abort_generation, teardown=_forget_generation)


def _release_groups() -> None:
    """At interpreter exit, before modules are torn down: the registry lets go of torch's process groups, so a
    group the program destroyed is freed while torch is whole. Kept until finalization, the world group of
    torch 2.11 was freed there and aborted the process ("terminate called without an active exception") in
    ranks pinned to one CPU each."""
    global _world
    with _registry_lock:
        _groups_by_pg.clear()
        _world = None


atexit.register(_release_groups)


# -- install(): the plain torch.distributed functions, guarded ------------------

_GUARDED = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "_all_gather_base",
            "reduce_scatter", "reduce_scatter_tensor", "_reduce_scatter_base", "barrier", "send", "recv",
            "isend", "irecv", "batch_isend_irecv")
_REFUSED = ("reduce", "gather", "scatter", "all_to_all", "all_to_all_single", "all_gather_object",
            "broadcast_object_list", "gather_object", "scatter_object_list", "all_reduce_coalesced",
            "all_gather_coalesced", "monitored_barrier")


def _group_of(group: Any, op: str) -> GuardedGroup:
    if isinstance(group, GuardedGroup):
        return group
    if group is None or group is dist.group.WORLD:
        return world()
    if group is dist.GroupMember.NON_GROUP_MEMBER:
        raise error("membership", f"rank {runtime().rank}, op {op}: called on a process group this rank is not a "
                                  "member of (torch would skip it silently and the members would hang)")
    found = _groups_by_pg.get(id(group))
    if found is None:
        raise error("invalid_argument", f"op {op} on a process group lockstep does not guard; create it with "
                                        "lockstep.torch.new_group(name, ranks) or wrap it with lockstep.torch.guard")
    return found


def install() -> None:
    """Routes the plain ``torch.distributed`` collectives through lockstep's checks.

    ``dist.all_reduce(t, group=g)`` then behaves as ``guarded.all_reduce(t)``
    for the GuardedGroup of ``g`` (``group=None``: the guarded world group);
    an unguarded group, a non-member's group handle, and the calls lockstep
    cannot check (reduce, gather, scatter, all_to_all, object collectives,
    coalesced calls) raise LockstepError instead of passing unseen. Call it
    after ``init_process_group`` and before the model code imports the
    functions by name. Idempotent.
    """
    if _torch_functions.get("_installed"):
        return
    for name in _GUARDED + _REFUSED + ("P2POp",):
        if hasattr(dist, name):
            _torch_functions[name] = getattr(dist, name)

    def all_reduce(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        return _group_of(group, "all_reduce").all_reduce(tensor, op=op, async_op=async_op)

    def broadcast(tensor, src, group=None, async_op=False):
        return _group_of(group, "broadcast").broadcast(tensor, src, async_op=async_op)

    def all_gather(tensor_list, tensor, group=None, async_op=False):
        return _group_of(group, "all_gather").all_gather(tensor_list, tensor, async_op=async_op)

    def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
        return _group_of(group, "all_gather").all_gather_into_tensor(output_tensor, input_tensor, async_op=async_op)

    def reduce_scatter(output, input_list, op=dist.ReduceOp.SUM, group=None, async_op=False):
        return _group_of(group, "reduce_scatter").reduce_scatter(output, input_list, op=op, async_op=async_op)

    def reduce_scatter_tensor(output, input, op=dist.ReduceOp.SUM, group=None, async_op=False):
        return _group_of(group, "reduce_scatter").reduce_scatter_tensor(output, input, op=op, async_op=async_op)

    def barrier(group=None, async_op=False, device_ids=None):
        if async_op:
            raise error("invalid_argument", "barrier(async_op=True): lockstep guards blocking barriers only")
        return _group_of(group, "barrier").barrier()

    def send(tensor, dst, group=None, tag=0):
        return _group_of(group, "send").send(tensor, dst, tag=tag)

    def recv(tensor, src=None, group=None, tag=0):
        if src is None:
            raise error("invalid_argument", "recv from any source: lockstep ledgers the peer, name it")
        _group_of(group, "recv").recv(tensor, src, tag=tag)
        return src

    def isend(tensor, dst, group=None, tag=0):
        return _group_of(group, "send").isend(tensor, dst, tag=tag)

    def irecv(tensor, src=None, group=None, tag=0):
        if src is None:
            raise error("invalid_argument", "irecv from any source: lockstep ledgers the peer, name it")
        return _group_of(group, "recv").irecv(tensor, src, tag=tag)

    def batch_isend_irecv(p2p_op_list):
        groups = {id(p.group) for p in p2p_op_list}
        if len(groups) != 1:
            raise error("invalid_argument", "batch_isend_irecv across several groups: lockstep ledgers one group")
        return _group_of(p2p_op_list[0].group, "batch_isend_irecv").batch_isend_irecv(p2p_op_list)

    def p2p_op(op, tensor, peer, group=None, tag=0):
        # torch's P2POp accepts only its own isend/irecv: map the guarded ones back.
        original = _torch("isend") if getattr(op, "__name__", "") == "isend" else _torch("irecv")
        return _torch("P2POp")(original, tensor, peer, group=group, tag=tag)

    replacements = {"P2POp": p2p_op, "all_reduce": all_reduce, "broadcast": broadcast, "all_gather": all_gather,
                    "all_gather_into_tensor": all_gather_into_tensor, "_all_gather_base": all_gather_into_tensor,
                    "reduce_scatter": reduce_scatter, "reduce_scatter_tensor": reduce_scatter_tensor,
                    "_reduce_scatter_base": reduce_scatter_tensor, "barrier": barrier, "send": send, "recv": recv,
                    "isend": isend, "irecv": irecv, "batch_isend_irecv": batch_isend_irecv}
    for name, replacement in replacements.items():
        if hasattr(dist, name):
            setattr(dist, name, replacement)
    for name in _REFUSED:
        if hasattr(dist, name):
            setattr(dist, name, _refuse(name))
    _torch_functions["_installed"] = lambda: None


def _refuse(name: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise error("invalid_argument", f"torch.distributed.{name} is not guarded by lockstep (it cannot check "
                                        "it before the backend); use a guarded collective, or the envelope codec "
                                        "instead of object collectives")
    refused.__name__ = name
    return refused


__all__ = ["GuardedGroup", "new_group", "world", "guard", "install", "digest", "fingerprint", "init_process_group",
           "LockstepError"]
