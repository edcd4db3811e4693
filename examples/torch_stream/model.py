"""lockstep's reference model (docs/reference-model.md) written in PyTorch, tensor-parallel over a mesh.

A streaming DiT-like generator: per layer, attention with heads sharded across
the mesh (column- then row-parallel, one all-reduce), a QK-norm over the full
dim (one small all-reduce), an MLP (column- then row-parallel, one
all-reduce), and a ring-buffer KV cache over frames. Weights follow the
page's deterministic recipe, so every TP size computes the same function and
the C++ CPU and CUDA models compute it too.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Callable, Deque, List, Optional, Tuple

import numpy as np
import torch

AllReduce = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    dim: int
    heads: int
    layers: int
    tokens_per_frame: int
    frames_per_chunk: int
    window_frames: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def tokens_per_chunk(self) -> int:
        return self.tokens_per_frame * self.frames_per_chunk


CONFIGS = {
    "tiny": ModelConfig("tiny", 64, 4, 2, 8, 2, 6),
    "small": ModelConfig("small", 256, 8, 4, 32, 3, 12),
    "dit14b-layer": ModelConfig("dit14b-layer", 5120, 40, 1, 720, 3, 12),
}

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(seed: int, tensor_id: int, rows: range, cols: range) -> np.ndarray:
    """u in [0, 1) per (row, col), as the page defines it (double)."""
    r = np.array(list(rows), dtype=np.uint64)[:, None]
    c = np.array(list(cols), dtype=np.uint64)[None, :]
    key = np.uint64(seed) ^ (np.uint64(tensor_id) << np.uint64(56)) ^ (r << np.uint64(28)) ^ c
    h = _splitmix64(key & _MASK64)
    return (h >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def _matrix(seed: int, tensor_id: int, fan_in: int, rows: range, cols: range) -> torch.Tensor:
    u = _uniform(seed, tensor_id, rows, cols)
    return torch.from_numpy(((2.0 * u - 1.0) / math.sqrt(fan_in)).astype(np.float32))


def _gain(seed: int, tensor_id: int, cols: range) -> torch.Tensor:
    u = _uniform(seed, tensor_id, range(1), cols)[0]
    return torch.from_numpy((1.0 + 0.1 * (2.0 * u - 1.0)).astype(np.float32))


class KvCache:
    """Per layer, the committed frames' keys and values (this rank's heads), oldest first, at most a window."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.frames: List[Deque[Tuple[torch.Tensor, torch.Tensor]]] = [
            collections.deque(maxlen=config.window_frames) for _ in range(config.layers)]
        self.end_frame = 0  # global stream position after the last committed frame
        self.recomputes = 0

    def reset(self) -> None:
        for layer in self.frames:
            layer.clear()
        self.end_frame = 0

    def keys_values(self, layer: int) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        frames = self.frames[layer]
        if not frames:
            return None
        return torch.cat([k for k, _ in frames]), torch.cat([v for _, v in frames])

    def commit(self, kv: List[Tuple[torch.Tensor, torch.Tensor]], advance: bool = True) -> None:
        """Appends a call's k, v as frames (the ring evicts the oldest)."""
        tpf = self.config.tokens_per_frame
        for layer, (k, v) in enumerate(kv):
            for f in range(k.shape[0] // tpf):
                self.frames[layer].append((k[f * tpf:(f + 1) * tpf], v[f * tpf:(f + 1) * tpf]))
        if advance:
            self.end_frame += kv[0][0].shape[0] // tpf

    def digest_words(self) -> List[int]:
        """(end frame, frames held, recomputes): equal on every mesh rank when their caches are in lockstep."""
        return [self.end_frame, len(self.frames[0]), self.recomputes]


class ShardedDiT:
    """One TP rank's shard of the reference model."""

    def __init__(self, config: ModelConfig, tp_rank: int, tp_size: int, seed: int = 1234,
                 device: str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if config.heads % tp_size != 0:
            raise ValueError(f"{config.heads} heads do not split over TP size {tp_size}")
        self.config, self.tp_rank, self.tp_size = config, tp_rank, tp_size
        d, hd = config.dim, config.head_dim
        heads = config.heads // tp_size
        head_cols = range(tp_rank * heads * hd, (tp_rank + 1) * heads * hd)
        hidden = 4 * d // tp_size
        mlp_cols = range(tp_rank * hidden, (tp_rank + 1) * hidden)
        rows_d = range(d)
        self.local_heads = heads

        def to(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        self.layers = []
        for layer in range(config.layers):
            base = layer * 16
            self.layers.append({
                "wq": to(_matrix(seed, base + 0, d, rows_d, head_cols)),
                "wk": to(_matrix(seed, base + 1, d, rows_d, head_cols)),
                "wv": to(_matrix(seed, base + 2, d, rows_d, head_cols)),
                "wo": to(_matrix(seed, base + 3, d, head_cols, range(d))),
                "w1": to(_matrix(seed, base + 4, d, rows_d, mlp_cols)),
                "w2": to(_matrix(seed, base + 5, 4 * d, mlp_cols, range(d))),
                "g_attn": to(_gain(seed, base + 6, range(d))),
                "g_mlp": to(_gain(seed, base + 7, range(d))),
                "g_q": to(_gain(seed, base + 8, head_cols)),
                "g_k": to(_gain(seed, base + 9, head_cols)),
            })
        self.t_embed = to(_matrix(seed, 10, 1, range(1), range(d))[0])

    def tensors(self) -> List[torch.Tensor]:
        """Every weight of this shard, in a fixed order (what the parity handshake fingerprints)."""
        return [layer[name] for layer in self.layers for name in sorted(layer)] + [self.t_embed]

    @staticmethod
    def _rmsnorm(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)

    def call(self, x: torch.Tensor, t: float, cache: Optional[KvCache], attention_bias: float,
             all_reduce: AllReduce) -> Tuple[torch.Tensor, List[Tuple[torch.Tensor, torch.Tensor]]]:
        """One generator call; returns x and each layer's (k, v) of this call. Never mutates the cache."""
        d, hd, heads = self.config.dim, self.config.head_dim, self.local_heads
        x = x + t * self.t_embed
        tokens = x.shape[0]
        new_kv = []
        for layer, w in enumerate(self.layers):
            h = self._rmsnorm(x) * w["g_attn"]
            q, k, v = h @ w["wq"], h @ w["wk"], h @ w["wv"]
            sums = torch.cat([q.pow(2).sum(dim=1), k.pow(2).sum(dim=1)])
            all_reduce(sums)
            q = q * torch.rsqrt(sums[:tokens, None] / d + 1e-6) * w["g_q"]
            k = k * torch.rsqrt(sums[tokens:, None] / d + 1e-6) * w["g_k"]
            new_kv.append((k, v))
            cached = cache.keys_values(layer) if cache is not None else None
            keys = k if cached is None else torch.cat([cached[0], k])
            values = v if cached is None else torch.cat([cached[1], v])
            bias = torch.zeros(keys.shape[0], dtype=x.dtype, device=x.device)
            if cached is not None:
                bias[:cached[0].shape[0]] = attention_bias
            qh = q.view(tokens, heads, hd).transpose(0, 1)
            kh = keys.view(-1, heads, hd).transpose(0, 1)
            vh = values.view(-1, heads, hd).transpose(0, 1)
            scores = qh @ kh.transpose(1, 2) / math.sqrt(hd) + bias
            o = (torch.softmax(scores, dim=-1) @ vh).transpose(0, 1).reshape(tokens, heads * hd)
            attn = o @ w["wo"]
            all_reduce(attn)
            x = x + attn
            h2 = self._rmsnorm(x) * w["g_mlp"]
            mlp = torch.nn.functional.gelu(h2 @ w["w1"], approximate="tanh") @ w["w2"]
            all_reduce(mlp)
            x = x + mlp
        return x, new_kv
