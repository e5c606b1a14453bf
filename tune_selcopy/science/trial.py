"""One trial: data, model, AdamW + cosine schedule, metrics, checkpoints (docs/science.md,
"Training").

Plain PyTorch, no Ray: ``Trial(config).validations()`` yields one metrics dict per
validation point; ``Trial.save``/``Trial.load`` hold everything needed to continue a trial
bit-identically. ``python -m tune_selcopy.train`` runs one trial from the command line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tune_selcopy.errors import UserError, one_line
from tune_selcopy.science.model import Attention, ConvTextModel, ModelConfig, format_attention, parse_attention
from tune_selcopy.science.task import MASK_TOKEN, SwapStream, batches, encode, validation_texts

TRAIN_WINDOW = 1_000  # train metrics are the mean over the most recent ~1,000 inputs
VALIDATION_BATCH = 1_000
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
    warmup_steps: int = 0  # a real linear warm-up; the reference's was cosmetic (spec 3)
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
        self.model_config()  # raises UserError for invalid model settings

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
    """Sums for one batch: logits ``[B, L, V]``, targets/inputs ``[B, L]`` -> ``[7]`` float.

    ``loss_sum`` is the cross-entropy summed over all positions; the counts are over all
    positions (``wrong``), masked positions, i.e. input token 0 (``masked_wrong``), and
    samples with at least one wrong position anywhere (``samples_wrong``). The constant
    counts are made with ``new_full`` (a fill kernel), not ``torch.tensor`` (a host-to-
    device copy), so a GPU step never waits on the host.
    """
    wrong = logits.argmax(dim=-1) != targets  # [B, L]
    masked = inputs == MASK_TOKEN
    if loss_sum is None:  # the training step passes the loss it already has
        loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum")
    return torch.stack(
        [
            loss_sum,
            logits.new_full((), float(targets.numel())),
            wrong.sum().float(),
            masked.sum().float(),
            (wrong & masked).sum().float(),
            logits.new_full((), float(targets.shape[0])),
            wrong.any(dim=1).sum().float(),
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


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Cosine annealing from 1 to 0 over ``total_steps`` (then 0), times a linear warm-up."""
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return cosine * min(1.0, (step + 1) / warmup_steps) if warmup_steps else cosine


# --- Devices and threads ---------------------------------------------------------------


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


def use_threads(threads: int) -> None:
    """Make torch use exactly ``threads`` intra-op CPU threads."""
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: continuing would only log garbage."""


# --- The trial -------------------------------------------------------------------------


class Trial:
    """One training run of a ``TrialConfig`` on one device.

    Training is split into ``num_validations`` equal parts of ``max_inputs`` (the published
    runs' epochs when max_inputs is 1M); each part is one freshly drawn epoch of the seeded
    training stream, followed by a validation. State is saved only at those points.
    """

    def __init__(self, config: TrialConfig, device: str = "cpu", threads: int | None = None):
        self.config = config
        self.device = resolve_device(device)
        if threads is not None:
            use_threads(threads)
        if self.device.type == "cpu":
            # As the model learns, intermediate values fall below 1.2e-38 into subnormal
            # floats, which x86 CPUs process many times slower: a checkpoint at 600,000
            # inputs trained ~7x slower than with them flushed to zero (bench/denormals.py).
            torch.set_flush_denormal(True)
        torch.manual_seed(config.seed)
        self.model = ConvTextModel(config.model_config()).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        total_steps = config.max_inputs // config.batch_size
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total_steps, config.warmup_steps)
        )
        val = validation_texts(
            config.val_count, config.val_num_operations, config.input_length, config.num_items
        )
        self.val_inputs, self.val_targets = (t.to(self.device) for t in encode(val))
        self.stream = SwapStream(
            config.seed,
            input_length=config.input_length,
            num_items=config.num_items,
            num_operations=config.num_operations,
            exclude=validation_texts(10_000, config.val_num_operations, config.input_length, config.num_items),
            device=self.device,
        )
        self.window = math.ceil(TRAIN_WINDOW / config.batch_size)
        self.recent = torch.zeros(self.window, len(STAT_FIELDS), device=self.device)
        self.validation_index = 0  # validations done so far = epochs done
        self.step = 0
        self.num_inputs = 0
        self.train_time_s = 0.0
        self.history: list[dict[str, Any]] = []

    @property
    def model_params(self) -> int:
        return self.model.num_params()

    @property
    def finished(self) -> bool:
        return self.validation_index >= self.config.num_validations

    def epoch_size(self, epoch: int) -> int:
        """Inputs in epoch ``epoch``: equal parts of max_inputs, the remainder in the last."""
        base = self.config.max_inputs // self.config.num_validations
        last = epoch == self.config.num_validations - 1
        return base + (self.config.max_inputs % self.config.num_validations if last else 0)

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """One optimizer step on a batch ``[B, L]``; no host sync."""
        logits = self.model(inputs)  # [B, L, 256]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        # Metrics stay on the device; they are read only at validation points.
        with torch.no_grad():
            self.recent[self.step % self.window] = batch_stats(
                logits.detach(), targets, inputs, loss.detach() * targets.numel()
            )
        self.step += 1
        self.num_inputs += inputs.shape[0]

    def _train_epoch(self) -> None:
        cfg = self.config
        self.model.train()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()  # drawing the epoch's data is part of the training time
        samples = self.stream.epoch(self.validation_index, self.epoch_size(self.validation_index))
        for inputs, targets in batches(samples, cfg.batch_size):
            self.train_step(inputs, targets)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.train_time_s += time.perf_counter() - start

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and error metrics over the whole validation set."""
        self.model.eval()
        total = torch.zeros(len(STAT_FIELDS), device=self.device)
        for begin in range(0, len(self.val_inputs), VALIDATION_BATCH):
            inputs = self.val_inputs[begin : begin + VALIDATION_BATCH]
            targets = self.val_targets[begin : begin + VALIDATION_BATCH]
            total += batch_stats(self.model(inputs), targets, inputs)
        return metrics_from_stats(dict(zip(STAT_FIELDS, total.tolist())), "validation")

    def _train_metrics(self) -> dict[str, float]:
        filled = self.recent[: min(self.step, self.window)]
        return metrics_from_stats(dict(zip(STAT_FIELDS, filled.sum(dim=0).tolist())), "train")

    def validations(self) -> Iterator[dict[str, Any]]:
        """Train epoch by epoch; after each, validate and yield the metrics row."""
        while not self.finished:
            self._train_epoch()
            self.validation_index += 1
            row: dict[str, Any] = {
                "validation_index": self.validation_index,
                "num_inputs": self.num_inputs,
                "step": self.step,
                "learning_rate": self.scheduler.get_last_lr()[0],
                **self._train_metrics(),
                **self.validate(),
                "model_params": self.model_params,
                "train_time_s": self.train_time_s,
                "throughput": self.num_inputs / self.train_time_s,
                "device": str(self.device),
            }
            for key in ("train_loss", "validation_loss"):
                if not math.isfinite(row[key]):
                    raise TrainingDiverged(
                        f"training diverged: {key} is {row[key]} after {self.num_inputs:,} inputs "
                        f"({self.config.flat()})"
                    )
            self.history.append(row)
            yield row

    def run(self) -> dict[str, Any]:
        """Train to the end; return the last metrics row."""
        for _ in self.validations():
            pass
        return self.history[-1]

    # --- checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "recent": self.recent.cpu(),
            "counters": {
                "validation_index": self.validation_index,
                "step": self.step,
                "num_inputs": self.num_inputs,
                "train_time_s": self.train_time_s,
            },
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()``'s output; ``UserError`` for anything else."""
        expected = self.state_dict()
        if not isinstance(state, Mapping) or set(state) != set(expected):
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise UserError(f"not a tune_selcopy trial checkpoint (expected keys {sorted(expected)}, found {found})")
        try:
            saved = TrialConfig.from_dict(state["config"])
        except (TypeError, ValueError) as exc:
            raise UserError(f"checkpoint has a broken config: {exc}") from None
        if saved != self.config:
            raise UserError(f"checkpoint belongs to another config: {saved} != {self.config}")
        if set(state["counters"]) != set(expected["counters"]):
            raise UserError(f"checkpoint counters {sorted(state['counters'])} are not {sorted(expected['counters'])}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.recent.copy_(state["recent"])
            torch.set_rng_state(state["torch_rng"].cpu())  # map_location may have moved it to the GPU
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"checkpoint does not fit this trial's model and optimizer: {one_line(exc, 300)}") from None
        for key, value in state["counters"].items():
            setattr(self, key, value)
        self.history = list(state["history"])

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

        ``weights_only=True``: checkpoints come from storage that others may write to, and
        a full unpickle would run whatever code a crafted file names. Ours hold only
        tensors, numbers, strings and containers, which the safe loader reads.
        """
        path = Path(directory) / CHECKPOINT_FILE
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
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
