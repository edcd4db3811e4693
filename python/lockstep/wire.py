"""Envelope and Result: lockstep's control frames, instead of broadcast_object_list.

An :class:`Envelope` (Stage 0 -> mesh) is built from a dict of meta plus
named tensors. :meth:`Codec.encode_envelope` runs every check first — meta
types and limits, tensor dtypes, contiguity and sizes, the action's schema
and the plan arithmetic — and only then returns the frame: nothing is sent
when anything is wrong, so no peer is stranded. The frame travels on the
control channel (:mod:`lockstep.channel`); the tensors it names follow over a
guarded process group (:meth:`lockstep.torch.GuardedGroup.broadcast_payload`),
in manifest order. The receiver decodes and validates the frame (header
checksum, body checksum, schema, job token, protocol version) and allocates
the tensors strictly from its manifest.

Meta values are int, float, bool, str or a list of one of those; a tensor in
meta is refused ("schema"): tensors go in ``tensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _core
from ._errors import error

ACTIONS = ("NOOP", "INFER", "SHUTDOWN", "ERROR")

# lockstep dtype name -> (torch dtype name, numpy dtype name)
_DTYPE_NAMES = {
    "bf16": ("bfloat16", None),
    "f16": ("float16", "float16"),
    "f32": ("float32", "float32"),
    "f64": ("float64", "float64"),
    "i64": ("int64", "int64"),
    "i32": ("int32", "int32"),
    "u8": ("uint8", "uint8"),
}

TensorLike = Any  # a torch.Tensor or a numpy.ndarray


@dataclass
class Plan:
    """The per-chunk plan of an INFER envelope (SPEC §2)."""

    plan_id: int
    num_denoise_steps: int
    timesteps: Sequence[float]
    do_kv_recompute: bool = False
    init_cache: bool = False
    attention_bias: float = 0.0
    expected_generator_calls: Optional[int] = None  # default: steps + recompute

    def to_tuple(self) -> Tuple[int, int, List[float], bool, bool, float, int]:
        """The plan's fields in declaration order, the default generator count filled in."""
        expected = self.expected_generator_calls
        if expected is None:
            expected = self.num_denoise_steps + (1 if self.do_kv_recompute else 0)
        return (int(self.plan_id), int(self.num_denoise_steps), [float(t) for t in self.timesteps],
                bool(self.do_kv_recompute), bool(self.init_cache), float(self.attention_bias), int(expected))


@dataclass
class Envelope:
    """What the mesh does next. Only INFER carries a plan, a geometry and tensors.

    ``tensors`` maps a key to a tensor or a list of tensors (index = position).
    INFER requires ``latents`` of shape [frames * tokens_per_frame, dim], and
    ``context_override`` exactly when the plan recomputes the KV cache.
    """

    action: str
    call_id: int
    chunk_index: int = 0
    cache_epoch: int = 0
    plan: Optional[Plan] = None
    geometry: Tuple[int, int, int] = (0, 0, 0)
    meta: Dict[str, Any] = field(default_factory=dict)
    tensors: Dict[str, Union[TensorLike, List[TensorLike]]] = field(default_factory=dict)
    error_reason: str = ""


@dataclass
class Result:
    """What the mesh did for one envelope, with its digests and the ``output`` tensor."""

    action: str
    call_id: int
    chunk_index: int = 0
    cache_epoch: int = 0
    plan_id: int = 0
    observed_generator_calls: int = 0
    geometry: Tuple[int, int, int] = (0, 0, 0)
    stage1_us: int = 0
    idle_us: int = 0
    digests: Tuple[int, int, int, int] = (0, 0, 0, 0)  # kv_state, output, input, ledger
    kv_frames: Optional[int] = None
    tensors: Dict[str, Union[TensorLike, List[TensorLike]]] = field(default_factory=dict)
    error_reason: str = ""


@dataclass
class TensorSpec:
    """One manifest entry: what the receiver allocates, in this order."""

    key: str
    index: int
    dtype: str  # lockstep name: "bf16", "f32", ...
    shape: Tuple[int, ...]
    size_bytes: int


@dataclass
class Decoded:
    """A decoded, validated frame: its fields (as the dataclass) and its manifest."""

    message: Union[Envelope, Result]
    manifest: List[TensorSpec]
    sender_rank: int
    body_checksum: int


_DTYPE_VALUES: Dict[str, int] = dict(_core.DTYPES)
_DTYPE_BY_VALUE = {v: k for k, v in _DTYPE_VALUES.items()}


def dtype_name_of(tensor: TensorLike, label: str = "tensor") -> str:
    """lockstep's dtype name of a torch tensor or numpy array; raises "encode" for one it does not carry (A2)."""
    dtype = str(getattr(tensor, "dtype", type(tensor).__name__)).replace("torch.", "")
    for name, (torch_name, numpy_name) in _DTYPE_NAMES.items():
        if dtype in (torch_name, numpy_name):
            return name
    raise error("encode", f"{label} has dtype {dtype}, which lockstep does not carry (bf16, f16, f32, f64, i64, "
                          "i32, u8)")


def _describe(key: str, index: int, tensor: TensorLike) -> Tuple[str, int, int, List[int], List[int], int, int]:
    dtype = _DTYPE_VALUES[dtype_name_of(tensor, f"tensor '{key}[{index}]'")]
    if hasattr(tensor, "data_ptr"):  # torch
        shape = list(tensor.shape)
        strides = list(tensor.stride())
        return key, index, dtype, shape, strides, int(tensor.data_ptr()), tensor.numel() * tensor.element_size()
    if hasattr(tensor, "__array_interface__"):  # numpy
        interface = tensor.__array_interface__
        itemsize = tensor.itemsize
        strides = [s // itemsize for s in tensor.strides]
        return key, index, dtype, list(tensor.shape), strides, int(interface["data"][0]), int(tensor.nbytes)
    raise error("encode", f"tensor '{key}[{index}]' is a {type(tensor).__name__}, not a torch tensor or numpy array")


def _describe_all(tensors: Dict[str, Union[TensorLike, List[TensorLike]]]) -> List[Tuple[Any, ...]]:
    described = []
    for key, value in tensors.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for index, tensor in enumerate(items):
            described.append(_describe(str(key), index, tensor))
    return described


def payload_order(tensors: Dict[str, Union[TensorLike, List[TensorLike]]]) -> List[TensorLike]:
    """The tensors in manifest (canonical) order: the order their bytes follow the frame."""
    flat = []
    for key, value in tensors.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for index, tensor in enumerate(items):
            flat.append(((str(key).encode(), index), tensor))
    flat.sort(key=lambda item: item[0])
    return [tensor for _, tensor in flat]


class Codec:
    """Encodes and decodes frames for one rank of one job.

    ``token_digest`` binds frames to the job (a frame of another job is
    refused), ``version`` is the negotiated protocol version, ``sender_rank``
    this rank. :func:`codec` makes one from :func:`lockstep.init`'s runtime.
    """

    def __init__(self, token_digest: int, sender_rank: int, version: int = _core.PROTOCOL_VERSION_MAX) -> None:
        self.token_digest = token_digest
        self.sender_rank = sender_rank
        self.version = version

    def _context(self, message: Union[Envelope, Result]) -> Tuple[int, int, int]:
        if message.action not in ACTIONS:
            raise error("schema", f"unknown action {message.action!r} (one of {', '.join(ACTIONS)})")
        return (self.version, self.sender_rank, self.token_digest)

    def encode_envelope(self, envelope: Envelope) -> bytes:
        """Preflight, then the whole frame; raises LockstepError naming the field before anything exists."""
        return _core.encode_envelope(self._envelope_args(envelope))

    def encode_result(self, result: Result) -> bytes:
        """Preflight, then the whole frame; raises LockstepError naming the field."""
        return _core.encode_result(self._result_args(result))

    def _envelope_args(self, envelope: Envelope) -> Tuple[Any, ...]:
        """The fields the core's preflight reads (their order is in wire_bindings.cc)."""
        plan = envelope.plan
        return (self._context(envelope), envelope.action, _ids(envelope), _geometry(envelope), envelope.meta,
                envelope.error_reason, plan.to_tuple() if plan is not None else None, _describe_all(envelope.tensors))

    def _result_args(self, result: Result) -> Tuple[Any, ...]:
        return (self._context(result), result.action, _ids(result), _geometry(result), int(result.plan_id),
                int(result.observed_generator_calls), int(result.stage1_us), int(result.idle_us),
                tuple(int(d) for d in result.digests), result.kv_frames, result.error_reason,
                _describe_all(result.tensors))

    def decode_envelope(self, frame: bytes) -> Decoded:
        """Decodes and validates an envelope frame (checksums, token, version, schema)."""
        return decoded_envelope(_core.decode_envelope(frame, self.token_digest, self.version))

    def decode_result(self, frame: bytes) -> Decoded:
        """Decodes and validates a result frame."""
        return decoded_result(_core.decode_result(frame, self.token_digest, self.version))


def decoded_envelope(fields: Tuple[Any, ...]) -> Decoded:
    """A Decoded envelope from the fields the core's decode returns (its order is in wire_bindings.cc)."""
    (action, (call_id, chunk_index, cache_epoch), geometry, meta, error_reason, plan, manifest, sender_rank,
     body_checksum) = fields
    envelope = Envelope(action, call_id, chunk_index, cache_epoch, Plan(*plan) if plan is not None else None,
                        geometry, meta, error_reason=error_reason)
    return Decoded(envelope, _manifest(manifest), sender_rank, body_checksum)


def decoded_result(fields: Tuple[Any, ...]) -> Decoded:
    """A Decoded result from the fields the core's decode returns."""
    (action, (call_id, chunk_index, cache_epoch), geometry, plan_id, observed_generator_calls, stage1_us, idle_us,
     digests, kv_frames, error_reason, manifest, sender_rank, body_checksum) = fields
    result = Result(action, call_id, chunk_index, cache_epoch, plan_id, observed_generator_calls, geometry,
                    stage1_us, idle_us, digests, kv_frames, error_reason=error_reason)
    return Decoded(result, _manifest(manifest), sender_rank, body_checksum)


def _ids(message: Union[Envelope, Result]) -> Tuple[int, int, int]:
    return (int(message.call_id), int(message.chunk_index), int(message.cache_epoch))


def _geometry(message: Union[Envelope, Result]) -> Tuple[int, int, int]:
    frames, tokens_per_frame, dim = message.geometry
    return (int(frames), int(tokens_per_frame), int(dim))


def _manifest(entries: Sequence[Tuple[str, int, int, List[int], int]]) -> List[TensorSpec]:
    return [TensorSpec(key, index, _DTYPE_BY_VALUE[dtype], tuple(shape), size)
            for key, index, dtype, shape, size in entries]


def allocate(manifest: Sequence[TensorSpec], device: Any = "cpu") -> Dict[str, List[Any]]:
    """torch tensors for a decoded manifest, keyed like the sender's, strictly from the manifest."""
    import torch

    out: Dict[str, List[Any]] = {}
    for spec in manifest:
        dtype = getattr(torch, _DTYPE_NAMES[spec.dtype][0])
        out.setdefault(spec.key, []).append(torch.empty(spec.shape, dtype=dtype, device=device))
    return out


def codec() -> Codec:
    """A Codec for this rank of the job :func:`lockstep.init` joined."""
    from .runtime import runtime

    current = runtime()
    return Codec(current.token_digest, current.rank)
