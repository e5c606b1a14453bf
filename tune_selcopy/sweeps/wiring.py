"""Pre-flight guard against the published bug: a search-space key that never reaches the
model or data it claims to vary (docs/science.md, "What the corrections were
about").

For every varied key, two trials that differ only in that key are built from their config
dicts exactly as the trainable builds them, with the same init seed, and trained for two
steps. If nothing they depend on differs, the key is miswired and the sweep must not run.
The two are settings of the sweep where it has such a pair, else one setting and a copy
with only that key changed; only a key that no valid pair can isolate is refused.
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
            [cfg.epoch_size(e) for e in range(cfg.num_validations)],
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


def _sweep_group(settings: Sequence[Mapping[str, Any]], key: str) -> dict[Any, Mapping[str, Any]]:
    """The largest group of the sweep's settings that differ only in ``key``: value -> setting."""
    groups: dict[tuple, dict[Any, Mapping[str, Any]]] = {}
    for setting in settings:
        rest = tuple(sorted((k, repr(v)) for k, v in setting.items() if k != key))
        groups.setdefault(rest, {}).setdefault(setting[key], setting)
    return max(groups.values(), key=len)


def _built_pair(settings: Sequence[Mapping[str, Any]], key: str) -> dict[Any, Mapping[str, Any]]:
    """A setting of the sweep and a config that differs from it only in ``key``, set to
    another of the sweep's values: value -> config. The second need not be a trial of the
    sweep (the guard only trains it for two steps), but it must be a valid config.

    ``UserError`` when no setting stays valid with only ``key`` changed, naming why."""
    values = list(dict.fromkeys(setting[key] for setting in settings))
    reasons: dict[str, str] = {}
    for setting in settings:
        for value in values:
            if value == setting[key]:
                continue
            changed = {**setting, key: value}
            try:
                TrialConfig.from_dict(changed)
            except UserError as exc:
                reasons.setdefault(str(exc), f"{key}={value} instead of {setting[key]}")
                continue
            return {setting[key]: setting, value: changed}
    why = "; ".join(f"{where}: {reason}" for reason, where in list(reasons.items())[:2])
    raise UserError(
        f"search-space key {key!r} cannot be checked: no two settings differ only in it, and changing only {key} "
        f"in any setting makes an invalid config ({why}), so no pair of trials can show that it reaches the model"
    )


def check_wiring(settings: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
    """Raise ``UserError`` naming the first key whose values all build the same trial.

    For each key the guard compares settings of the sweep that differ only in it; when the
    sweep has no such pair (settings picked by hand, a diagonal of two keys), it builds
    one: a setting with only that key changed to another of its values."""
    for key in keys:
        group = _sweep_group(settings, key)
        if len(group) < 2:
            group = _built_pair(settings, key)
        (first_value, first), *others = group.items()
        reference = fingerprint(first)
        for value, other in others:
            if same(reference, fingerprint(other)):
                raise UserError(
                    f"miswired search space: key {key!r} changes nothing ({key}={first_value} and "
                    f"{key}={value} build identical trials: same model, data and outputs); "
                    "it never reaches the model or data it claims to vary"
                )
