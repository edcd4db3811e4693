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

    def to_dict(self) -> Dict[str, Any]:
        expected = self.expected_generator_calls
        if expected is None:
            expected = self.num_denoise_steps + (1 if self.do_kv_recompute else 0)
        return {"plan_id": int(self.plan_id), "num_denoise_steps": int(self.num_denoise_steps),
                "timesteps": [float(t) for t in self.timesteps], "do_kv_recompute": bool(self.do_kv_recompute),
                "init_cache": bool(self.init_cache), "attention_bias": float(self.attention_bias),
                "expected_generator_calls": int(expected)}


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

    def _frame(self, message: Union[Envelope, Result]) -> Dict[str, Any]:
        if message.action not in ACTIONS:
            raise error("schema", f"unknown action {message.action!r} (one of {', '.join(ACTIONS)})")
        return {"action": message.action, "call_id": int(message.call_id), "chunk_index": int(message.chunk_index),
                "cache_epoch": int(message.cache_epoch), "geometry": tuple(int(g) for g in message.geometry),
                "error_reason": message.error_reason, "version": self.version, "sender_rank": self.sender_rank,
                "token_digest": self.token_digest}

    def encode_envelope(self, envelope: Envelope) -> bytes:
        """Preflight, then the whole frame; raises LockstepError naming the field before anything exists."""
        spec = self._frame(envelope)
        spec["meta"] = envelope.meta
        spec["plan"] = envelope.plan.to_dict() if envelope.plan is not None else None
        return _core.encode_envelope(spec, _describe_all(envelope.tensors))

    def encode_result(self, result: Result) -> bytes:
        """Preflight, then the whole frame; raises LockstepError naming the field."""
        spec = self._frame(result)
        spec.update({"plan_id": int(result.plan_id), "observed_generator_calls": int(result.observed_generator_calls),
                     "stage1_us": int(result.stage1_us), "idle_us": int(result.idle_us),
                     "digests": tuple(int(d) for d in result.digests), "kv_frames": result.kv_frames})
        return _core.encode_result(spec, _describe_all(result.tensors))

    def decode_envelope(self, frame: bytes) -> Decoded:
        """Decodes and validates an envelope frame (checksums, token, version, schema)."""
        raw = _core.decode_envelope(frame, self.token_digest, self.version)
        plan = raw["plan"]
        envelope = Envelope(action=raw["action"], call_id=raw["call_id"], chunk_index=raw["chunk_index"],
                            cache_epoch=raw["cache_epoch"], plan=Plan(**plan) if plan is not None else None,
                            geometry=tuple(raw["geometry"]), meta=raw["meta"], error_reason=raw["error_reason"])
        return self._decoded(envelope, raw)

    def decode_result(self, frame: bytes) -> Decoded:
        """Decodes and validates a result frame."""
        raw = _core.decode_result(frame, self.token_digest, self.version)
        result = Result(action=raw["action"], call_id=raw["call_id"], chunk_index=raw["chunk_index"],
                        cache_epoch=raw["cache_epoch"], plan_id=raw["plan_id"],
                        observed_generator_calls=raw["observed_generator_calls"], geometry=tuple(raw["geometry"]),
                        stage1_us=raw["stage1_us"], idle_us=raw["idle_us"], digests=tuple(raw["digests"]),
                        kv_frames=raw["kv_frames"], error_reason=raw["error_reason"])
        return self._decoded(result, raw)

    @staticmethod
    def _decoded(message: Union[Envelope, Result], raw: Dict[str, Any]) -> Decoded:
        manifest = [TensorSpec(key, index, _DTYPE_BY_VALUE[dtype], tuple(shape), size)
                    for key, index, dtype, shape, size in raw["manifest"]]
        return Decoded(message, manifest, raw["sender_rank"], raw["body_checksum"])


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
