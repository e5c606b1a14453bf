"""Search spaces: a grid of settings times repeated seeds, declared in ``search_spaces/``.

A space module defines ``SPACE = Space(...)``. Adding a space means adding one module.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import search_spaces
from tune_selcopy.errors import UserError
from tune_selcopy.train import TrialConfig

Constraint = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Space:
    """A grid over trial-config keys, crossed with ``seeds`` repetitions.

    ``grid`` keys are shown as table columns in declaration order (a one-value key is
    shown too, as the published tables do); ``fixed`` values apply to every trial;
    ``constraints`` are predicates over a setting's full config (grid + fixed) that must
    all hold for the setting to run. Rows are grouped by the grid keys: the seed is the
    dimension averaged away.
    """

    name: str
    description: str
    grid: Mapping[str, list[Any]]
    seeds: int
    fixed: Mapping[str, Any] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()

    @property
    def varied_keys(self) -> list[str]:
        """Grid keys with more than one value: the ones a comparison is about."""
        return [key for key, values in self.grid.items() if len(values) > 1]

    def settings(self, overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every grid combination that passes the constraints, as flat config dicts.

        ``overrides`` replace fixed values (e.g. a shorter ``max_inputs`` for a smoke run).
        """
        base = {**self.fixed, **(overrides or {})}
        clash = sorted(set(base) & set(self.grid))
        if clash:
            raise UserError(f"space {self.name}: {clash} are grid keys and cannot be overridden")
        out = []
        for combo in itertools.product(*self.grid.values()):
            config = {**base, **dict(zip(self.grid, combo))}
            if all(check(config) for check in self.constraints):
                out.append(TrialConfig.from_dict(config).flat())
        if not out:
            raise UserError(f"space {self.name}: the constraints leave no setting to run")
        return out

    def setting_label(self, config: Mapping[str, Any]) -> str:
        """``attn=0,0,T qkv=QK attnact=elu+1``: the grid values of one setting."""
        return " ".join(f"{key}={config[key]}" for key in self.grid)

    def trials(self, seeds: int | None = None, overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Settings x seeds 1..N, each a flat trial config (seed included)."""
        count = self.seeds if seeds is None else seeds
        if count < 1:
            raise UserError(f"--trials must be >= 1, got {count}")
        return [
            {**setting, "seed": seed}
            for setting in self.settings(overrides)
            for seed in range(1, count + 1)
        ]


def available_spaces() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(search_spaces.__path__) if not m.name.startswith("_"))


def load_space(name: str) -> Space:
    """The ``SPACE`` of ``search_spaces/<name>.py``; an unknown name lists the known ones."""
    known = available_spaces()
    if name not in known:
        raise UserError(f"unknown space {name!r}; available: {', '.join(known)}")
    space = getattr(importlib.import_module(f"search_spaces.{name}"), "SPACE", None)
    if not isinstance(space, Space):
        raise UserError(f"search_spaces/{name}.py defines no SPACE = Space(...)")
    return space
