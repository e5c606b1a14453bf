"""The residual dilated Conv1d text model with optional attention per layer
(docs/science.md, "The model").

Per layer: ``y = conv(x)``; with attention the conv invents some of q/k/v (the rest is the
layer input x) and attention mixes the sequence; then ``out = gelu(y) + x``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tune_selcopy.errors import UserError

# A layer's attention: 0/False = none, True = parameter-free linear attention,
# an int h >= 1 = nn.MultiheadAttention with h heads. (True is also an int in Python,
# so code below always tests ``is True`` before treating a value as a head count.)
Attention = bool | int

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1, elementwise: ``[B, L, C] -> [B, L, C]``."""
    return F.elu(x) + 1


def dpfp(x: torch.Tensor) -> torch.Tensor:
    """Deterministic parameter-free projection, nu = 1: ``[B, L, C] -> [B, L, 2C]``."""
    r = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
    return r * torch.roll(r, shifts=1, dims=-1)


FEATURE_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"elu+1": elu_plus_one, "dpfp": dpfp}


def format_attention(attention: tuple[Attention, ...]) -> str:
    """``(0, 0, True)`` -> ``"0,0,T"`` (the published notation)."""
    return ",".join("T" if a is True else str(int(a)) for a in attention)


def parse_attention(text: str) -> tuple[Attention, ...]:
    """``"0,0,T"`` -> ``(0, 0, True)``; also accepts ``True``/``False`` words."""
    values: list[Attention] = []
    for part in text.split(","):
        word = part.strip()
        if word in ("T", "True"):
            values.append(True)
        elif word in ("F", "False"):
            values.append(0)
        elif word.isdigit():
            values.append(int(word))
        else:
            raise UserError(f"bad attention entry {word!r} in {text!r}: use 0, T or a head count")
    return tuple(values)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 256
    num_layers: int = 3
    channels: int = 64
    kernel_size: int = 13
    dilation: tuple[int, ...] = (3, 5, 1)
    activation: str = "gelu"
    attention: tuple[Attention, ...] = (0, 0, True)
    invention: str = "QK"  # which of q, k, v the conv invents, in its output-chunk order
    attention_activation: str = "elu+1"  # feature map of the linear attention

    def __post_init__(self) -> None:
        problems = []
        if len(self.dilation) != self.num_layers:
            problems.append(f"dilation has {len(self.dilation)} entries for {self.num_layers} layers")
        if len(self.attention) != self.num_layers:
            problems.append(f"attention has {len(self.attention)} entries for {self.num_layers} layers")
        inv = self.invention
        if not (2 <= len(inv) <= 3 and set(inv) <= set("QKV") and len(set(inv)) == len(inv)):
            problems.append(f"unknown invention {inv!r}: use QK, QV, KV or QKV")
        if self.attention_activation not in FEATURE_MAPS:
            problems.append(
                f"unknown attention activation {self.attention_activation!r}: use {' or '.join(FEATURE_MAPS)}"
            )
        if self.activation not in ACTIVATIONS:
            problems.append(f"unknown activation {self.activation!r}: use {' or '.join(ACTIVATIONS)}")
        for a in self.attention:
            if a is True or a is False:
                continue
            if not isinstance(a, int) or a < 0:
                problems.append(f"attention entry {a!r} must be 0, True or a head count >= 1")
            elif a and self.channels % a:
                problems.append(f"{a} heads do not divide {self.channels} channels")
        if any(not isinstance(d, int) or d < 1 for d in self.dilation):
            problems.append(f"dilation {self.dilation} entries must be integers >= 1")
        if self.kernel_size % 2 == 0:
            problems.append(f"kernel_size {self.kernel_size} must be odd to preserve length")
        if problems:
            raise UserError("invalid model config: " + "; ".join(problems))


class LinearAttention(nn.Module):
    """Parameter-free linear attention: ``phi(q) @ (phi(k)^T @ v) / (C * L)``."""

    def __init__(self, feature_map: str):
        super().__init__()
        self.phi = FEATURE_MAPS[feature_map]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q, k, v: [B, L, C]
        length, channels = v.shape[1], v.shape[2]
        context = self.phi(k).transpose(1, 2) @ v  # [B, C', C]
        return self.phi(q) @ context / (channels * length)  # [B, L, C]


class SoftmaxAttention(nn.Module):
    """``nn.MultiheadAttention`` called as the reference does: no mask, no weights."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim=channels, num_heads=heads, batch_first=True)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.mha(q, k, v, need_weights=False)[0]  # [B, L, C]


class Layer(nn.Module):
    def __init__(self, config: ModelConfig, dilation: int, attention: Attention):
        super().__init__()
        ch, ks = config.channels, config.kernel_size
        self.invention = config.invention if attention else ""
        self.conv = nn.Conv1d(
            ch, ch * max(1, len(self.invention)), ks, dilation=dilation, padding=(ks // 2) * dilation
        )
        if attention is True:
            self.attention: nn.Module | None = LinearAttention(config.attention_activation)
        elif attention:
            self.attention = SoftmaxAttention(ch, attention)
        else:
            self.attention = None
        self.act = ACTIVATIONS[config.activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, L]
        y = self.conv(x)  # [B, C * len(invention), L]
        if self.attention is not None:
            invented = dict(zip(self.invention, y.chunk(len(self.invention), dim=1)))
            q, k, v = (invented.get(role, x).transpose(1, 2) for role in "QKV")  # [B, L, C]
            y = self.attention(q, k, v).transpose(1, 2)  # [B, C, L]
        return self.act(y) + x


class ConvTextModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.channels)
        self.layers = nn.ModuleList(
            Layer(config, d, a) for d, a in zip(config.dilation, config.attention)
        )
        self.head = nn.Linear(config.channels, config.vocab_size, bias=False)
        self.head.weight = self.embedding.weight  # tied

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: [B, L] int64
        x = self.embedding(tokens).transpose(1, 2)  # [B, C, L]
        for layer in self.layers:
            x = layer(x)
        return self.head(x.transpose(1, 2))  # [B, L, vocab]

    def num_params(self) -> int:
        """Distinct parameters (the tied head counted once), as the published table counts."""
        return sum(p.numel() for p in self.parameters())
