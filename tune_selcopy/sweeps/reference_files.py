"""Experiment files of the reference tool, read as a ``Space`` without running any of them.

The reference declares an experiment as a YAML file: a ``matrix:`` of published short
names (each a list of values; the sweep is their product), top-level settings that may
refer to a matrix key as ``${key}``, and Python code strings that build the data set, the
model and the trainer. Here:

- the short names keep their published meaning: each one reaches the model or data it
  names (the wiring guard then checks that it really does), whatever the code strings
  say; the code strings themselves are ignored, with one note saying so;
- the matrix's ``$filter`` is a Python expression and is never evaluated: a combination
  whose config is invalid (a per-layer list whose length is not ``l``) is dropped by
  ``Space.resolve`` instead, which counts and names what it dropped;
- a value this tool cannot honour (``opt: SGD``, ``posemb: 1``, an unknown key) is an
  error naming its key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tune_selcopy.errors import UserError
from tune_selcopy.science.trial import TrialConfig
from tune_selcopy.sweeps.spaces import Space, coerce, space_name

# Published short name -> trial-config key.
SHORT_NAMES: dict[str, str] = {
    "bs": "batch_size",
    "lr": "lr",
    "nitem": "num_items",
    "len": "input_length",
    "nops": "num_operations",
    "vnops": "val_num_operations",
    "l": "num_layers",
    "ch": "channels",
    "ks": "kernel_size",
    "dil": "dilation",
    "attn": "attn",
    "qkv": "qkv",
    "attnact": "attnact",
    "act": "activation",
}
SEED_KEY = "trial"  # the seed list: 1..N
FILTER_KEY = "$filter"
# What this tool does one way only: matrix key -> (the values that mean it, what it is).
ONE_WAY: dict[str, tuple[tuple[Any, ...], str]] = {
    "opt": (("AdamW",), "training uses AdamW"),
    "posemb": ((0, False), "the model has no position embedding"),
}
# Table columns even with one value, as in the published tables of these experiments.
SETTING_KEYS = ("attn", "qkv", "attnact")
# Top-level settings that are read: file key -> (trial-config key, the matrix key that
# its ``${...}`` template may name).
TOP_LEVEL: dict[str, tuple[str | None, str | None]] = {
    "max_inputs": ("max_inputs", None),
    "batch_size": ("batch_size", "bs"),
    "learnrate": ("lr", "lr"),
    "optimizer": (None, "opt"),
}
# The reference's warm-up changed only the logged rate, never the applied one (docs/science.md, training).
COSINE_SCHEDULERS = ("CosineAnnealingWarmupLR", "CosineAnnealingLR")
TEMPLATE = re.compile(r"\$\{(\w+)\}")


def _value(key: str, value: Any) -> Any:
    """A matrix or top-level value as a checked trial-config value; errors name ``key``."""
    if key in SHORT_NAMES:
        return coerce(SHORT_NAMES[key], value, f"matrix key {key!r}")
    return coerce(TOP_LEVEL[key][0], value, key)


def _seeds(values: list[Any]) -> int:
    if values != list(range(1, len(values) + 1)):
        raise UserError(f"matrix key {SEED_KEY!r} must list the seeds 1..N, got {values}")
    return len(values)


def _layer_count(matrix: Mapping[str, Any]) -> int | None:
    """The matrix's one layer count (TrialConfig's without ``l``); None if l varies."""
    counts = matrix.get("l", [TrialConfig.num_layers])
    if isinstance(counts, list) and len(counts) == 1 and isinstance(counts[0], int):
        return counts[0]
    return None


def _per_layer(key: str, value: Any, layers: int | None) -> Any:
    """The reference allows one value for every layer (``dil: 1``): repeat it ``l`` times."""
    if isinstance(value, list):
        return value
    if layers is None:
        raise UserError(f"matrix key {key!r}: {value!r} for every layer needs a single value of l")
    return [value] * layers


def _matrix(matrix: Any) -> tuple[dict[str, list[Any]], int, list[str]]:
    """The matrix as trial-config key -> values (matrix order), the seed count, notes."""
    if not isinstance(matrix, Mapping):
        raise UserError("matrix must map the published short names to lists of values")
    grid: dict[str, list[Any]] = {}
    seeds, notes = 1, []
    layers = _layer_count(matrix)
    for key, values in matrix.items():
        if key == FILTER_KEY:
            notes.append(
                f"the matrix's {FILTER_KEY} (a Python expression) is not evaluated; combinations "
                "whose config is invalid are dropped instead"
            )
            continue
        if key not in SHORT_NAMES and key not in ONE_WAY and key != SEED_KEY:
            known = ", ".join([SEED_KEY, *SHORT_NAMES, *ONE_WAY])
            raise UserError(f"matrix key {key!r} is not one of the published short names ({known})")
        if not isinstance(values, list) or not values:
            raise UserError(f"matrix key {key!r}: expected a non-empty list of values, got {values!r}")
        if key == SEED_KEY:
            seeds = _seeds(values)
        elif key in ONE_WAY:
            accepted, meaning = ONE_WAY[key]
            for value in values:
                if not any(value is a or (type(value) is type(a) and value == a) for a in accepted):
                    raise UserError(f"matrix key {key!r}: {value!r} cannot be honoured: {meaning}")
        else:
            if key in ("attn", "dil"):
                values = [_per_layer(key, value, layers) for value in values]
            grid[SHORT_NAMES[key]] = [_value(key, value) for value in values]
    return grid, seeds, notes


def _top_level(data: Mapping[str, Any], matrix: Mapping[str, Any]) -> dict[str, Any]:
    """Fixed values from ``max_inputs``, ``batch_size``, ``learnrate``, ``optimizer``.

    A ``${key}`` template may name only the matrix key of the same meaning; a literal
    next to that matrix key is an error, since the matrix key would then reach nothing.
    """
    fixed: dict[str, Any] = {}
    for key, (target, short) in TOP_LEVEL.items():
        if key not in data:
            continue
        value = data[key]
        template = TEMPLATE.fullmatch(value) if isinstance(value, str) else None
        if template:
            if short is None or template[1] != short:
                allowed = f"${{{short}}} or a value" if short else "a value"
                raise UserError(f"{key}: {value} cannot be used here: it takes {allowed}")
            if short not in matrix:
                raise UserError(f"{key}: {value} names no matrix key")
            continue
        if short in matrix:
            raise UserError(f"{key}: {value!r} would leave matrix key {short!r} reaching nothing; write ${{{short}}}")
        if target is None:
            accepted, meaning = ONE_WAY[short]
            if value not in accepted:
                raise UserError(f"{key}: {value!r} cannot be honoured: {meaning}")
        else:
            fixed[target] = _value(key, value)
    scheduler = data.get("scheduler", COSINE_SCHEDULERS[0])
    if scheduler not in COSINE_SCHEDULERS:
        raise UserError(f"scheduler: {scheduler!r} cannot be honoured: training uses plain cosine annealing")
    return fixed


def space_from_reference(data: Mapping[str, Any], path: str) -> Space:
    """A reference experiment file (already ``yaml.safe_load``-ed) as a Space.

    Matrix keys with several values, and ``attn``/``qkv``/``attnact`` always, become grid
    keys in matrix order; the other matrix keys and the top-level settings become fixed
    values. The space is named after the file.
    """
    try:
        grid, seeds, notes = _matrix(data["matrix"])
        fixed = _top_level(data, data["matrix"])
    except UserError as exc:
        raise UserError(f"space file {path}: {exc}") from None
    for key, values in list(grid.items()):
        if len(values) == 1 and key not in SETTING_KEYS:
            fixed[key] = grid.pop(key)[0]
    ignored = [str(key) for key in data if key != "matrix" and key not in TOP_LEVEL and key != "scheduler"]
    if ignored:
        notes.append(f"ignored (code strings and settings this tool does not read): {', '.join(ignored)}")
    return Space(
        name=space_name(Path(path).stem, path),
        description=f"the reference's experiment matrix in {Path(path).name}",
        grid=grid,
        seeds=seeds,
        fixed=fixed,
        notes=notes,
        source=path,
    )
