"""The residual dilated Conv1d text model with optional attention per layer
(docs/science.md, "The model").

Per layer: ``y = conv(x)``; with attention the conv invents some of q/k/v (the rest is the
layer input x) and attention mixes the sequence; then ``out = gelu(y) + x``.
``ModelStack`` trains K such models of one config (several seeds) as one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

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


class ModelStack:
    """K ``ConvTextModel`` s of one config trained side by side: ``[K, ...]`` in and out.

    With K = 1 ``forward_shared``, ``map`` and the state calls use the model itself, the
    plain eager path (a lone seed's training step calls it directly). With K > 1 the
    parameters are stacked ``[K, ...]`` (``torch.func.stack_module_state``) and the model's
    own forward is vmapped over them: each seed computes exactly its model's function (with
    its own parameter count), but every op runs once for all K, as one batched kernel
    (convolutions become grouped ones, matmuls batched). Seeds share no values, so one
    AdamW over the stacked parameters is K separate AdamWs (it is elementwise).
    """

    def __init__(self, models: list[ConvTextModel]):
        self.vmapped = len(models) > 1
        if self.vmapped:
            self.params, _ = stack_module_state(models)  # {name: [K, ...]} leaves; no buffers
            with torch.device("meta"):  # structure only; built, not moved, to keep the tie
                self.module = ConvTextModel(models[0].config)
        else:
            self.module = models[0]
            self.params = dict(self.module.named_parameters())  # the tied head counted once

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def num_params(self) -> int:
        """Parameters of one seed's model, as the published table counts them."""
        return self.module.num_params()

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def seed_tensor(self, param: torch.Tensor, k: int) -> torch.Tensor:
        """Seed ``k``'s part of a (stacked) parameter or of its optimizer state."""
        return param[k] if self.vmapped else param

    def _call(self, params: Mapping[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, params, (tokens,))

    def forward(self, tokens: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[K', B, L, vocab]`` for tokens ``[K', B, L]``: seed ``index[i]`` (all
        K seeds in order when ``index`` is None) reads ``tokens[i]``. Stacks only: one seed
        trains through ``module`` itself (``Trial.train_step``)."""
        params = self.params if index is None else {name: p[index] for name, p in self.params.items()}
        # The CPU flash-attention kernel has no vmap rule (torch would loop over the seeds);
        # the math backend is plain batched matmuls and softmax.
        with sdpa_kernel(SDPBackend.MATH):
            return vmap(self._call)(params, tokens)

    def forward_shared(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[K, B, L, vocab]`` of every seed for the same tokens ``[B, L]``."""
        if not self.vmapped:
            return self.module(tokens)[None]
        with sdpa_kernel(SDPBackend.MATH):
            return vmap(self._call, in_dims=(0, None))(self.params, tokens)

    def map(self, fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
        """``fn`` applied to each seed's slice of ``args`` (all ``[K', ...]``), stacked."""
        if not self.vmapped:
            return fn(*(a[0] for a in args))[None]
        return vmap(fn)(*args)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict() if not self.vmapped else {k: v.detach() for k, v in self.params.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy saved values in place (they may be on another device); errors for a
        mismatch in names or shapes."""
        if not self.vmapped:
            self.module.load_state_dict(state)
            return
        if set(state) != set(self.params):
            raise KeyError(f"parameters {sorted(state)} are not {sorted(self.params)}")
        with torch.no_grad():
            for name, param in self.params.items():
                if state[name].shape != param.shape:
                    raise ValueError(f"{name}: shape {tuple(state[name].shape)} is not {tuple(param.shape)}")
                param.copy_(state[name])
