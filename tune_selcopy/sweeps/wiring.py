"""Pre-flight guard against the published bug: a search-space key that never reaches the
model or data it claims to vary (spec section 6).

For every varied key, two trials that differ only in that key are built from their config
dicts exactly as the trainable builds them, with the same init seed, and trained for two
steps. If nothing they depend on differs, the key is miswired and the sweep must not run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tune_selcopy.errors import UserError
from tune_selcopy.science.task import stacked_batches
from tune_selcopy.science.trial import Trial, TrialConfig

PROBE_SEED = 0
PROBE_STEPS = 2
PROBE_SAMPLES = 16


def fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial built from ``config`` depends on: its plan, model, data and outputs.

    plan: epoch sizes, step count and validation-set shape; model: structure and
    parameter count; data: the first training batches' tokens; output: the model's
    logits on validation inputs after ``PROBE_STEPS`` optimizer steps.
    """
    cfg = TrialConfig.from_dict({**config, "seed": PROBE_SEED})
    trial = Trial(cfg)
    samples = trial.streams[0].epoch(0, PROBE_STEPS * cfg.batch_size)
    data = []
    for inputs, targets, widths in stacked_batches([samples], cfg.batch_size):
        data.append(inputs.flatten())
        trial.train_step(inputs, targets, widths)
    with torch.no_grad():
        output = trial.net.forward_shared(trial.val_inputs[:PROBE_SAMPLES])
    return {
        "plan": (
            [trial.epoch_size(e) for e in range(cfg.num_validations)],
            cfg.max_inputs // cfg.batch_size,
            tuple(trial.val_inputs.shape),
        ),
        "model": (repr(trial.net.module), trial.model_params),
        "data": torch.cat(data),
        "output": output,
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two fingerprints are identical in every part."""
    return all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


def _pairs_differing_in(settings: Sequence[Mapping[str, Any]], key: str) -> dict[Any, Mapping[str, Any]]:
    """The largest group of settings that differ only in ``key``: value -> setting."""
    groups: dict[tuple, dict[Any, Mapping[str, Any]]] = {}
    for setting in settings:
        rest = tuple(sorted((k, repr(v)) for k, v in setting.items() if k != key))
        groups.setdefault(rest, {}).setdefault(setting[key], setting)
    return max(groups.values(), key=len)


def check_wiring(settings: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
    """Raise ``UserError`` naming the first key whose values all build the same trial."""
    for key in keys:
        group = _pairs_differing_in(settings, key)
        if len(group) < 2:
            raise UserError(f"search-space key {key!r}: no two settings differ only in it, so it cannot be checked")
        (first_value, first), *others = group.items()
        reference = fingerprint(first)
        for value, other in others:
            if same(reference, fingerprint(other)):
                raise UserError(
                    f"miswired search space: key {key!r} changes nothing ({key}={first_value} and "
                    f"{key}={value} build identical trials: same model, data and outputs); "
                    "it never reaches the model or data it claims to vary"
                )
