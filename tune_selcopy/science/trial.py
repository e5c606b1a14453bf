"""One trial: data, model, AdamW + cosine schedule, metrics, checkpoints (docs/science.md,
"Training").

Plain PyTorch, no Ray: ``Trial(config).validations()`` yields, per validation point, the
metrics row of each seed; ``Trial(config, seeds=(1, 2, 3))`` trains several seeds of one
setting as one stacked model (``model.ModelStack``), each with its own initialisation,
data stream, optimizer state and metrics, as if trained alone. ``Trial.save``/``Trial.load``
hold everything needed to continue bit-identically. ``python -m tune_selcopy.train`` runs
one from the command line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tune_selcopy.errors import UserError, one_line
from tune_selcopy.science.model import (
    Attention,
    ConvTextModel,
    ModelConfig,
    ModelStack,
    format_attention,
    parse_attention,
)
from tune_selcopy.science.task import MASK_TOKEN, SwapStream, encode, stacked_batches, validation_texts

TRAIN_WINDOW = 1_000  # train metrics are the mean over the most recent ~1,000 inputs
VALIDATION_BATCH = 1_000  # validation samples per forward (divided among a stack's seeds)
CHECKPOINT_FILE = "trial.pt"


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial depends on; the defaults are the published runs' fixed settings."""

    attn: tuple[Attention, ...] = (0, 0, True)
    qkv: str = "QK"
    attnact: str = "elu+1"
    num_layers: int = 3
    channels: int = 64
    kernel_size: int = 13
    dilation: tuple[int, ...] = (3, 5, 1)
    activation: str = "gelu"
    num_items: int = 26
    input_length: int = 5
    num_operations: tuple[int, int] = (1, 3)  # training programs, inclusive range
    val_num_operations: int = 3
    val_count: int = 10_000  # a prefix of the reference validation set
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0  # a real linear warm-up; the reference's only changed the logged rate (docs/science.md)
    max_inputs: int = 1_000_000
    num_validations: int = 10
    seed: int = 1

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrialConfig":
        """Build from plain values (CLI/Tune/Parquet style: ``"0,0,T"``, ``"3,5,1"``, lists)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown trial config keys {unknown}; known: {sorted(known)}")
        parsed = dict(values)
        if isinstance(parsed.get("attn"), str):
            parsed["attn"] = parse_attention(parsed["attn"])
        for key in ("attn", "dilation", "num_operations"):
            value = parsed.get(key)
            if isinstance(value, str):
                value = [int(v) for v in value.split(",")]
            if isinstance(value, list | tuple):
                parsed[key] = tuple(value)
        if isinstance(parsed.get("num_operations"), int):
            n = parsed["num_operations"]
            parsed["num_operations"] = (n, n)
        return cls(**parsed)

    def __post_init__(self) -> None:
        checks = [
            (self.num_validations >= 1 and self.max_inputs >= self.num_validations,
             f"max_inputs {self.max_inputs} must be >= num_validations {self.num_validations} >= 1"),
            # The cosine schedule spans max_inputs // batch_size steps.
            (self.max_inputs >= self.batch_size >= 1,
             f"max_inputs {self.max_inputs} must be >= batch_size {self.batch_size} (one step at least)"),
            (1 <= self.val_count <= 10_000, f"val_count {self.val_count} must be in 1..10000"),
            (self.batch_size >= 1, f"batch_size {self.batch_size} must be >= 1"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr {self.lr} must be a positive number"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay {self.weight_decay} must be >= 0"),
            # A negative warm-up would make the applied learning rate negative.
            (self.warmup_steps >= 0, f"warmup_steps {self.warmup_steps} must be >= 0"),
            # The data stream mixes the seed with numpy's SeedSequence (non-negative) and
            # torch.manual_seed takes at most 64 bits.
            (0 <= self.seed < 2**63, f"seed {self.seed} must be in 0..2**63-1"),
            (self.num_layers >= 1 and self.channels >= 1 and self.kernel_size >= 1,
             "num_layers, channels and kernel_size must be >= 1"),
            (self.val_num_operations >= 1, f"val_num_operations {self.val_num_operations} must be >= 1"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise UserError("invalid trial config: " + "; ".join(problems))
        SwapStream.check(self.input_length, self.num_items, self.num_operations)
        SwapStream.check_room(self.input_length, self.num_items, self.num_operations,
                              self.epoch_size(self.num_validations - 1), self.val_num_operations)
        self.model_config()  # raises UserError for invalid model settings

    def epoch_size(self, epoch: int) -> int:
        """Inputs in epoch ``epoch``: equal parts of max_inputs, the remainder in the last."""
        base = self.max_inputs // self.num_validations
        last = epoch == self.num_validations - 1
        return base + (self.max_inputs % self.num_validations if last else 0)

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            num_layers=self.num_layers,
            channels=self.channels,
            kernel_size=self.kernel_size,
            dilation=self.dilation,
            activation=self.activation,
            attention=self.attn,
            invention=self.qkv,
            attention_activation=self.attnact,
        )

    def flat(self) -> dict[str, Any]:
        """Scalar values for logs and tables: lists as ``"0,0,T"`` / ``"3,5,1"`` strings."""
        out = dataclasses.asdict(self)
        out["attn"] = format_attention(self.attn)
        out["dilation"] = ",".join(map(str, self.dilation))
        out["num_operations"] = ",".join(map(str, self.num_operations))
        return out


# --- Metrics ---------------------------------------------------------------------------
# Per batch, a stats vector of sums, so that sums over batches give exact means:
STAT_FIELDS = ("loss_sum", "positions", "wrong", "masked", "masked_wrong", "samples", "samples_wrong")


def batch_stats(
    logits: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor, loss_sum: torch.Tensor | None = None
) -> torch.Tensor:
    """Sums for one batch: logits ``[B, L, V]``, targets/inputs ``[B, L]`` -> ``[7]`` in
    the logits' dtype.

    ``loss_sum`` is the cross-entropy summed over all positions; the counts are over all
    positions (``wrong``), masked positions, i.e. input token 0 (``masked_wrong``), and
    samples with at least one wrong position anywhere (``samples_wrong``). The constant
    counts are made with ``new_full`` (a fill kernel), not ``torch.tensor`` (a host-to-
    device copy), so a GPU step never waits on the host.
    """
    wrong = logits.argmax(dim=-1) != targets  # [B, L]
    masked = inputs == MASK_TOKEN
    if loss_sum is None:  # the training step passes the loss it already has
        loss_sum = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
    dtype = logits.dtype
    return torch.stack(
        [
            loss_sum,
            logits.new_full((), float(targets.numel())),
            wrong.sum().to(dtype),
            masked.sum().to(dtype),
            (wrong & masked).sum().to(dtype),
            logits.new_full((), float(targets.shape[0])),
            wrong.any(dim=1).sum().to(dtype),
        ]
    )


def metrics_from_stats(stats: Mapping[str, float], prefix: str) -> dict[str, float]:
    """Summed stats -> ``{prefix}_loss`` and the three error percentages."""
    return {
        f"{prefix}_loss": stats["loss_sum"] / stats["positions"],
        f"{prefix}_error%": 100.0 * stats["wrong"] / stats["positions"],
        f"{prefix}_mask_error%": 100.0 * stats["masked_wrong"] / max(stats["masked"], 1.0),
        f"{prefix}_sample_error%": 100.0 * stats["samples_wrong"] / stats["samples"],
    }


def mean_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss: cross-entropy over all positions, mean; ``[B, L, V]`` -> ``[]``."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Cosine annealing from 1 to 0 over ``total_steps`` (then 0), times a linear warm-up."""
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return cosine * min(1.0, (step + 1) / warmup_steps) if warmup_steps else cosine


# --- Devices, threads and the numerics of a run ------------------------------------------

# TF32 (10-bit mantissa inputs, float32 accumulation) for float32 work on CUDA GPUs of
# compute capability 8.0 and later: mode -> (matmuls, cuDNN convolutions). "conv" is
# PyTorch's own default since 1.12 (matmuls in full float32, convolutions in TF32), and
# what the published runs most likely used (docs/gpus.md says why).
TF32_MODES = {"conv": (False, True), "off": (False, False), "all": (True, True)}
DEFAULT_TF32 = "conv"


def _per_op_tf32_api() -> bool:
    """torch >= 2.9 sets TF32 per backend and operator (``fp32_precision``); mixing that
    with the older ``allow_tf32`` flags raises there, so only one of them is ever used."""
    return hasattr(torch.backends.cudnn, "conv")


def set_tf32(mode: str) -> None:
    """Apply a ``TF32_MODES`` mode to this process (it changes nothing on a CPU)."""
    if mode not in TF32_MODES:
        raise UserError(f"unknown TF32 mode {mode!r}: use {', '.join(TF32_MODES)}")
    matmul, conv = TF32_MODES[mode]
    if _per_op_tf32_api():
        torch.backends.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if conv else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = conv


def tf32_flags() -> tuple[bool, bool]:
    """Whether torch is set to use TF32 for (matmuls, cuDNN convolutions)."""
    if _per_op_tf32_api():
        return (torch.backends.cuda.matmul.fp32_precision == "tf32",
                torch.backends.cudnn.conv.fp32_precision == "tf32")
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def run_environment(device: torch.device) -> dict[str, Any]:
    """What a row records about where it was computed: the device's name, the torch,
    CUDA and cuDNN versions (None where the build has none), and whether TF32 was in
    effect for matmuls and convolutions (never on a CPU or a GPU older than Ampere)."""
    cuda = device.type == "cuda"
    has_tf32 = cuda and torch.cuda.get_device_capability(device) >= (8, 0)
    matmul, conv = tf32_flags()
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "torch_version": str(torch.__version__),  # a str subclass the safe loader refuses
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "tf32_matmul": has_tf32 and matmul,
        "tf32_conv": has_tf32 and conv,
    }


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:i]``; asking for cuda without one is an error, not a fallback."""
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message is a multi-line list of every backend
        raise UserError(f"unknown device {name!r}: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but torch sees no CUDA device (torch {torch.__version__})")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}: use cpu or cuda")
    return device


def cap_cuda_memory(fraction: float, device: torch.device | str = "cuda") -> None:
    """Make a GPU share a real cap: the allocator raises out-of-memory above ``fraction``
    of the device's memory (Ray's GPU fractions are admission control only)."""
    torch.cuda.set_per_process_memory_fraction(min(1.0, fraction), device)


def use_threads(threads: int) -> None:
    """Make torch use exactly ``threads`` intra-op CPU threads."""
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"3"`` or ``"1,2,3"`` -> distinct seeds; ``UserError`` otherwise."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"seeds {text!r}: give an integer or comma-separated integers (1,2,3)") from None
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds {text!r}: each seed once")
    return seeds


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: continuing would only log garbage."""


# --- The trial -------------------------------------------------------------------------

# A checkpoint's top-level keys (Trial.state_dict).
CHECKPOINT_KEYS = frozenset(
    {"config", "seeds", "model", "optimizer", "scheduler", "recent", "counters", "diverged", "history", "torch_rng"}
)
COUNTERS = ("validation_index", "step", "num_inputs", "train_time_s")


class Trial:
    """One training run of a ``TrialConfig`` on one device, for one seed or a stack of them.

    Training is split into ``num_validations`` equal parts of ``max_inputs`` (the published
    runs' epochs when max_inputs is 1M); each part is one freshly drawn epoch of each seed's
    training stream, followed by a validation. State is saved only at those points.

    ``seeds`` (default: ``config.seed`` alone) are trained side by side; each seed's
    model is initialised by ``torch.manual_seed(seed)`` and built, exactly as alone. A seed
    whose loss turns NaN or infinite stops there (its last row says ``diverged``) and the
    others go on. ``dtype`` float64 exists for the tests that compare stacks with single
    seeds; ``tf32`` is a ``TF32_MODES`` mode.
    """

    def __init__(
        self,
        config: TrialConfig,
        device: str = "cpu",
        threads: int | None = None,
        *,
        seeds: Sequence[int] | None = None,
        tf32: str = DEFAULT_TF32,
        dtype: torch.dtype = torch.float32,
    ):
        self.seeds = tuple(seeds) if seeds is not None else (config.seed,)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"a trial trains distinct seeds, got {list(self.seeds)}")
        self.configs = [dataclasses.replace(config, seed=seed) for seed in self.seeds]  # checks each seed
        self.config = self.configs[0]
        self.device = resolve_device(device)
        if threads is not None:
            use_threads(threads)
        if self.device.type == "cpu":
            # As the model learns, intermediate values fall below 1.2e-38 into subnormal
            # floats, which x86 CPUs process many times slower: a checkpoint at 600,000
            # inputs trained ~7x slower than with them flushed to zero (bench/denormals.py).
            torch.set_flush_denormal(True)
        set_tf32(tf32)
        self.environment = run_environment(self.device)
        models = []
        for seed in self.seeds:
            torch.manual_seed(seed)  # on the CPU, then moved: the same weights on every device
            models.append(ConvTextModel(config.model_config()).to(device=self.device, dtype=dtype))
        self.net = ModelStack(models)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        total_steps = config.max_inputs // config.batch_size
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total_steps, config.warmup_steps)
        )
        val = validation_texts(
            config.val_count, config.val_num_operations, config.input_length, config.num_items
        )
        self.val_inputs, self.val_targets = (t.to(self.device) for t in encode(val))
        exclude = validation_texts(10_000, config.val_num_operations, config.input_length, config.num_items)
        self.streams = [
            SwapStream(
                seed,
                input_length=config.input_length,
                num_items=config.num_items,
                num_operations=config.num_operations,
                exclude=exclude,
            )
            for seed in self.seeds
        ]
        self.window = math.ceil(TRAIN_WINDOW / config.batch_size)
        k = len(self.seeds)
        self.recent = torch.zeros(k, self.window, len(STAT_FIELDS), device=self.device, dtype=dtype)
        # Each seed's weight in the summed loss: 1, and 0 once it has diverged (see _stop).
        self.loss_weights = torch.ones(k, device=self.device, dtype=dtype)
        self.diverged: list[str | None] = [None] * k  # why each seed stopped, if it did
        self.validation_index = 0  # validations done so far = epochs done
        self.step = 0
        self.num_inputs = 0
        self.train_time_s = 0.0
        self.history: list[list[dict[str, Any]]] = [[] for _ in self.seeds]

    @property
    def model_params(self) -> int:
        return self.net.num_params()

    @property
    def training(self) -> list[int]:
        """The indices of the seeds still training."""
        return [k for k, why in enumerate(self.diverged) if why is None]

    @property
    def finished(self) -> bool:
        return self.validation_index >= self.config.num_validations or not self.training


    def train_step(
        self, inputs: torch.Tensor, targets: torch.Tensor, widths: Sequence[int] | None = None, stats: bool = True
    ) -> None:
        """One optimizer step of every seed on its batch ``[K, B, W]``; no host sync.

        ``widths`` are the seeds' own batch widths (``stacked_batches``; None: all W).
        Seeds whose widths differ go through the model in separate groups, each at its
        own width: padding a batch wider would change what its loss and convolutions see.
        ``stats``: also keep the step's train metrics (only the steps a validation reads).
        """
        self.optimizer.zero_grad(set_to_none=True)
        if self.net.vmapped:
            done = self._stack_backward(inputs, targets, widths)
        else:  # one seed: the plain step, without a stack's loss weights and width groups
            logits = self.net.module(inputs[0])  # [B, W, 256]
            loss = mean_loss(logits, targets[0])
            loss.backward()
            done = [(None, inputs, targets, logits.detach()[None], loss.detach()[None])] if stats else []
        self.optimizer.step()
        self.scheduler.step()
        if stats:  # metrics stay on the device; they are read only at validation points
            slot = self.step % self.window
            with torch.no_grad():
                for index, x, y, logits, losses in done:
                    step_stats = self.net.map(batch_stats, logits, y, x, losses * y[0].numel())
                    self.recent[slice(None) if index is None else index, slot] = step_stats
        self.step += 1
        self.num_inputs += inputs.shape[1]

    def _stack_backward(
        self, inputs: torch.Tensor, targets: torch.Tensor, widths: Sequence[int] | None
    ) -> list[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The stack's forward and backward, group by group of equal batch width; per group
        (seed index or None for all, inputs, targets, logits, losses) for the metrics."""
        done = []
        total = None
        for index, width in _width_groups(widths, inputs.shape[2], self.device):
            x, y = (inputs, targets) if index is None else (inputs[index, :, :width], targets[index, :, :width])
            logits = self.net.forward(x, index)  # [K', B, W, 256]
            losses = self.net.map(mean_loss, logits, y)  # [K']
            weights = self.loss_weights if index is None else self.loss_weights[index]
            term = (losses * weights).sum()
            total = term if total is None else total + term
            done.append((index, x, y, logits.detach(), losses.detach()))
        total.backward()
        return done

    def _train_epoch(self) -> None:
        cfg = self.config
        self.net.train()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()  # drawing the epoch's data is part of the training time
        size = self.config.epoch_size(self.validation_index)
        # A stopped seed's batches are never learned from: it reuses a training seed's
        # epoch instead of drawing its own, so it also never splits a step by width.
        live = self.training[0]
        drawn = {k: self.streams[k].epoch(self.validation_index, size) for k in self.training}
        epochs = [drawn.get(k, drawn[live]) for k in range(len(self.seeds))]
        # Train metrics are read only at the validation after this epoch, over its last
        # `window` steps: the steps before those compute none (a short epoch reads all).
        first_read = self.step + math.ceil(size / cfg.batch_size) - self.window
        for inputs, targets, widths in stacked_batches(epochs, cfg.batch_size, device=self.device):
            self.train_step(inputs, targets, widths, stats=self.step >= first_read)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.train_time_s += time.perf_counter() - start

    @torch.no_grad()
    def validate(self) -> list[dict[str, float]]:
        """Loss and error metrics over the whole validation set, one dict per seed."""
        self.net.train(False)
        k = len(self.seeds)
        total = torch.zeros(k, len(STAT_FIELDS), device=self.device, dtype=self.recent.dtype)
        chunk = max(1, VALIDATION_BATCH // k)  # a stack's logits take K times the memory
        for begin in range(0, len(self.val_inputs), chunk):
            inputs = self.val_inputs[begin : begin + chunk]
            targets = self.val_targets[begin : begin + chunk]
            shared = (targets.expand(k, -1, -1), inputs.expand(k, -1, -1))
            total += self.net.map(batch_stats, self.net.forward_shared(inputs), *shared)
        return [metrics_from_stats(dict(zip(STAT_FIELDS, row)), "validation") for row in total.tolist()]

    def _train_metrics(self, k: int) -> dict[str, float]:
        filled = self.recent[k, : min(self.step, self.window)]
        return metrics_from_stats(dict(zip(STAT_FIELDS, filled.sum(dim=0).tolist())), "train")

    def _stop(self, k: int, why: str) -> None:
        """Seed ``k`` diverged: zero its parameters and AdamW moments and its loss weight.
        From then on it computes finite zeros, its gradients are exactly zero, and AdamW
        leaves it at zero; the other seeds never see it (no op mixes seeds)."""
        self.diverged[k] = why
        with torch.no_grad():
            self.loss_weights[k] = 0.0
            for param in self.net.parameters():
                self.net.seed_tensor(param, k).zero_()
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in self.optimizer.state.get(param, {}):
                        self.net.seed_tensor(self.optimizer.state[param][key], k).zero_()

    def validations(self) -> Iterator[list[dict[str, Any]]]:
        """Train epoch by epoch; after each, validate and yield the rows of the seeds that
        were training (a seed that has just diverged says so in its row, then stops)."""
        while not self.finished:
            self._train_epoch()
            self.validation_index += 1
            validation = self.validate()
            rows = []
            for k in self.training:
                row: dict[str, Any] = {
                    "seed": self.seeds[k],
                    "validation_index": self.validation_index,
                    "num_inputs": self.num_inputs,
                    "step": self.step,
                    "learning_rate": self.scheduler.get_last_lr()[0],
                    **self._train_metrics(k),
                    **validation[k],
                    "model_params": self.model_params,
                    "train_time_s": self.train_time_s,
                    "throughput": self.num_inputs / self.train_time_s,
                    "diverged": False,
                    **self.environment,
                }
                bad = [key for key in ("train_loss", "validation_loss") if not math.isfinite(row[key])]
                if bad:
                    row["diverged"] = True
                    self._stop(k, f"training diverged: {bad[0]} is {row[bad[0]]} after {self.num_inputs:,} "
                                  f"inputs ({self.configs[k].flat()})")
                self.history[k].append(row)
                rows.append(row)
            yield rows

    def run(self) -> list[dict[str, Any]]:
        """Train to the end; return each seed's last metrics row."""
        for _ in self.validations():
            pass
        return [rows[-1] for rows in self.history]

    # --- checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "seeds": list(self.seeds),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "recent": self.recent.cpu(),
            "counters": {key: getattr(self, key) for key in COUNTERS},
            "diverged": list(self.diverged),
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()``'s output (on the CPU; each part is moved where it
        belongs); ``UserError`` for anything else."""
        if not isinstance(state, Mapping) or set(state) != CHECKPOINT_KEYS:
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise UserError(f"not a tune_selcopy trial checkpoint (expected keys {sorted(CHECKPOINT_KEYS)}, found {found})")
        try:
            saved = TrialConfig.from_dict(state["config"])
        except (TypeError, ValueError) as exc:
            raise UserError(f"checkpoint has a broken config: {exc}") from None
        if dataclasses.replace(saved, seed=self.config.seed) != self.config:
            raise UserError(f"checkpoint belongs to another config: {saved} != {self.config}")
        if list(state["seeds"]) != list(self.seeds):
            raise UserError(f"checkpoint belongs to seeds {list(state['seeds'])}, not {list(self.seeds)}")
        if not isinstance(state["counters"], Mapping) or set(state["counters"]) != set(COUNTERS):
            raise UserError(f"checkpoint counters {sorted(state['counters'])} are not {sorted(COUNTERS)}")
        try:
            self.net.load_state_dict(state["model"])
            # AdamW moves its moments to their parameters' device and keeps `step` where
            # it finds it: on the CPU, where it creates it, so a step never syncs on it.
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.recent.copy_(state["recent"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"checkpoint does not fit this trial's model and optimizer: {one_line(exc, 300)}") from None
        for key, value in state["counters"].items():
            setattr(self, key, value)
        self.diverged = list(state["diverged"])
        self.loss_weights.copy_(torch.tensor([why is None for why in self.diverged]))
        self.history = [list(rows) for rows in state["history"]]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the checkpoint atomically into ``directory``; return the file path."""
        path = Path(directory) / CHECKPOINT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    def load(self, directory: str | os.PathLike) -> None:
        """Continue from the checkpoint in ``directory``.

        It is read onto the CPU whatever the trial's device, and each part moves where it
        belongs: a checkpoint read straight onto a GPU would leave AdamW's step counters
        there, and AdamW then reads each back to the host on every step.
        ``weights_only=True``: checkpoints come from storage that others may write to, and
        a full unpickle would run whatever code a crafted file names. Ours hold only
        tensors, numbers, strings and containers, which the safe loader reads.
        """
        path = Path(directory) / CHECKPOINT_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # crafted, truncated or foreign: say which, in one line
            refused = re.search(r"Unsupported global: (GLOBAL \S+)", str(exc))
            if refused:  # it names code to run: refused, whatever torch's message suggests
                raise UserError(
                    f"refusing checkpoint {path}: it is not a tune_selcopy checkpoint, and loading it would run "
                    f"code it names ({refused.group(1)})"
                ) from None
            raise UserError(f"cannot read checkpoint {path}: {one_line(exc, 300)}") from None
        try:
            self.load_state_dict(state)
        except UserError as exc:
            raise UserError(f"checkpoint {path}: {exc}") from None

    @staticmethod
    def has_checkpoint(directory: str | os.PathLike) -> bool:
        return (Path(directory) / CHECKPOINT_FILE).exists()


def _width_groups(
    widths: Sequence[int] | None, width: int, device: torch.device
) -> list[tuple[torch.Tensor | None, int]]:
    """The seeds of one step grouped by their batch's width: ``[(index, width)]``, index
    None for all seeds at once (nearly always: 3-op programs occur in every batch of 64)."""
    if widths is None or len(set(widths)) == 1:
        return [(None, width)]
    groups: dict[int, list[int]] = {}
    for k, w in enumerate(widths):
        groups.setdefault(w, []).append(k)
    return [(torch.tensor(ks, device=device), w) for w, ks in sorted(groups.items())]
