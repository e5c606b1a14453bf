"""Search spaces: a grid of settings times repeated seeds.

A space is declared in one of three ways, and all three resolve to the same plain-data
``ResolvedSpace`` that the dry run, the wiring guard and the sweep use:

- a module ``search_spaces/<name>.py`` defining ``SPACE = Space(...)``;
- a YAML space file (``name``, ``description``, ``seeds``, ``grid``, ``fixed``,
  ``exclude``), read with ``yaml.safe_load`` only;
- an experiment file of the reference tool (a top-level ``matrix:``), translated by
  ``reference_files``.

``space_sources`` finds and reads them; this module is the space itself and its values.

Every value is checked on its own when the space is resolved (a value no setting could
use is an error naming its key); a grid combination whose config is invalid only as a
whole (a per-layer list whose length is not ``num_layers``, heads that do not divide the
channels) is dropped and counted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import typing
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tune_selcopy.errors import UserError
from tune_selcopy.science.model import parse_attention
from tune_selcopy.science.trial import TrialConfig

# Trial-config keys a space may set; the seed is the dimension a sweep repeats.
FIELD_TYPES: dict[str, Any] = {k: v for k, v in typing.get_type_hints(TrialConfig).items() if k != "seed"}
# A space name: at most 80 characters, so that its default sweep name NAME-YYYYmmdd-HHMMSS[-N]
# stays within the 100 characters of a sweep name (folder.SWEEP_NAME).
SPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


# --- Values ----------------------------------------------------------------------------

_EXPECTED = {
    int: "an integer",
    float: "a number",
    str: "a string",
    "attn": "one entry per layer, each 0, T or a head count (a list or '0,0,T')",
    "dilation": "one integer per layer (a list or '3,5,1')",
    "num_operations": "an integer or an inclusive range (a list or '1,3')",
}


def _ints(value: Any) -> tuple[int, ...]:
    """``[3, 5, 1]`` or ``"3,5,1"`` -> ``(3, 5, 1)``; anything else raises TypeError/ValueError."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise TypeError(value)
    if any(isinstance(v, bool) or not isinstance(v, int | str) for v in items):
        raise TypeError(value)
    return tuple(int(v) for v in items)


def _typed(key: str, value: Any) -> Any:
    """``value`` as the Python type of TrialConfig's ``key``; TypeError/ValueError if it is not.

    Strings are parsed (command-line values, and YAML 1.1 reads ``5e-4`` as a string);
    booleans are never numbers.
    """
    if key == "attn":
        if isinstance(value, str):
            return parse_attention(value)
        if not isinstance(value, list | tuple) or not all(isinstance(v, int) for v in value):
            raise TypeError(value)
        return tuple(value)
    if key == "dilation":
        return _ints(value)
    if key == "num_operations":
        ops = (value,) if isinstance(value, int) and not isinstance(value, bool) else _ints(value)
        if len(ops) == 1:
            return ops * 2  # a fixed count n is the range n..n
        if len(ops) != 2:
            raise ValueError(value)
        return ops
    kind = FIELD_TYPES[key]
    if isinstance(value, str):
        return kind(value)  # "gelu"; int("32"), float("5e-4"): ValueError when it is not one
    if isinstance(value, bool):
        raise TypeError(value)
    if kind is int and isinstance(value, int) or kind is float and isinstance(value, int | float):
        return kind(value)
    raise TypeError(value)


def _siblings(key: str, value: Any) -> dict[str, Any]:
    """Other values sized to fit ``value`` (layer count, channels for the head counts), so
    that a value is judged alone and only combinations can be invalid together."""
    if key == "attn":
        heads = [a for a in value if a is not True and a > 0]
        return {"num_layers": len(value), "dilation": (1,) * len(value), "channels": math.lcm(*heads)}
    if key == "dilation":
        return {"num_layers": len(value), "attn": (0,) * len(value)}
    if key == "num_layers":
        return {"attn": (0,) * value, "dilation": (1,) * value}
    return {}


def coerce(key: str, value: Any, name: str | None = None) -> Any:
    """One trial-config value from a space file or the command line, checked on its own.

    Returns it in the flat form of the logs and tables (``"0,0,T"``, ``"3,5,1"``, numbers,
    strings). Raises UserError, naming ``name`` (default ``key``), for an unknown key, a
    value of the wrong type, or a value no setting could use (``qkv=XY``, ``activation=tanh``).
    """
    name = name or key
    if key not in FIELD_TYPES:
        raise UserError(f"{name}: not a trial-config key a space can set; those are: {', '.join(FIELD_TYPES)}")
    try:
        typed = _typed(key, value)
    except (TypeError, ValueError, UserError):
        expected = _EXPECTED.get(key) or _EXPECTED[FIELD_TYPES[key]]
        raise UserError(f"{name}: {value!r} is not {expected}") from None
    try:
        config = TrialConfig.from_dict({**_siblings(key, typed), key: typed})
    except UserError as exc:
        raise UserError(f"{name}: {value!r} cannot be used: {exc}") from None
    return config.flat()[key]


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["channels=32", "dilation=1,2,3"]`` (``--set``) -> checked flat values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise UserError(f"--set {item!r}: use KEY=VALUE with KEY one of {', '.join(FIELD_TYPES)}")
        out[key] = coerce(key, value, f"--set {key}")
    return out


# --- Declared and resolved spaces --------------------------------------------------------


@dataclass(frozen=True)
class ResolvedSpace:
    """A space with its settings spelled out: plain data, saved with the sweep.

    ``settings`` are flat trial configs (no seed), each run with seeds 1..``seeds``;
    ``columns`` name the setting in tables and logs (``setting_label``); ``notes`` say
    what the resolution dropped or ignored; ``warnings`` what looks like a mistake.
    """

    name: str
    description: str
    columns: list[str]
    seeds: int
    settings: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def varied_keys(self) -> list[str]:
        """Columns with more than one value: the keys a comparison (and the guard) is about."""
        return [key for key in self.columns if len({s[key] for s in self.settings}) > 1]

    def setting_label(self, config: Mapping[str, Any]) -> str:
        """``attn=0,0,T qkv=QK attnact=elu+1``: the column values of one setting."""
        return _label({key: config[key] for key in self.columns})

    def trials(self) -> list[dict[str, Any]]:
        """Settings x seeds 1..N, each a flat trial config (seed included)."""
        return [{**setting, "seed": seed} for setting in self.settings for seed in range(1, self.seeds + 1)]

    def to_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "ResolvedSpace":
        """The inverse of ``to_data`` (a saved sweep's space); UserError if it is not one."""
        try:
            space = cls(**data)
            for setting in space.settings:
                TrialConfig.from_dict(setting)
            space.setting_label(space.settings[0])
        except (TypeError, KeyError, IndexError, UserError) as exc:
            raise UserError(f"not a saved search space: {exc}") from None
        return space


@dataclass(frozen=True)
class Space:
    """A grid over trial-config keys, crossed with ``seeds`` repetitions.

    ``grid`` maps keys to their values; ``fixed`` values apply to every trial; ``exclude``
    lists partial settings (grid key -> value) to leave out. ``notes`` carry what the
    loader wants said with the space (e.g. keys of a reference file it ignored);
    ``source`` is the file it was read from (errors name it).
    Values may be given as Python values or in the flat form (``"0,0,T"``).
    """

    name: str
    description: str
    grid: Mapping[str, Sequence[Any]]
    seeds: int
    fixed: Mapping[str, Any] = field(default_factory=dict)
    exclude: Sequence[Mapping[str, Any]] = ()
    notes: Sequence[str] = ()
    source: str = ""  # the file it was read from, for messages

    def resolve(self, overrides: Mapping[str, Any] | None = None, seeds: int | None = None) -> ResolvedSpace:
        """Every grid combination that is not excluded and makes a valid config.

        ``overrides`` replace fixed values (``--set``, ``--max-inputs``); a grid key cannot
        be overridden. ``seeds`` replaces the space's seed count (``--trials``). The
        columns are the grid keys, in order, except a key declared with several values of
        which only one survives the dropping (it no longer varies).
        """
        if seeds is not None and seeds < 1:
            raise UserError(f"--trials must be >= 1, got {seeds}")
        where = f"space file {self.source}" if self.source else f"space {self.name}"
        try:
            resolved = self._resolve(dict(overrides or {}), self.seeds if seeds is None else seeds)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        return dataclasses.replace(resolved, warnings=[f"{where}: {w}" for w in resolved.warnings])

    def _resolve(self, overrides: dict[str, Any], seeds: int) -> ResolvedSpace:
        clash = [key for key in overrides if key in self.grid]
        if clash:
            settable = ", ".join(k for k in FIELD_TYPES if k not in self.grid)
            raise UserError(f"{', '.join(clash)}: a grid key cannot be set; settable: {settable}")
        if not self.grid:
            raise UserError("the grid is empty")
        grid = {key: [_checked("grid", key, v) for v in values] for key, values in self.grid.items()}
        for key, values in grid.items():
            if not values or len(set(values)) != len(values):
                raise UserError(f"grid {key}: needs distinct values, got {values}")
        base = {key: _checked("fixed", key, value) for key, value in {**self.fixed, **overrides}.items()}
        exclude = [_exclude_entry(i, entry, grid) for i, entry in enumerate(self.exclude, 1)]
        kept: list[dict[str, Any]] = []
        used: set[int] = set()
        excluded = 0
        invalid = Counter[str]()
        for combo in itertools.product(*grid.values()):
            values = dict(zip(grid, combo))
            hits = {i for i, entry in enumerate(exclude, 1) if entry.items() <= values.items()}
            if hits:
                used |= hits
                excluded += 1
                continue
            try:
                kept.append(TrialConfig.from_dict({**base, **values}).flat())
            except UserError as exc:
                invalid[str(exc)] += 1
        total = len(kept) + excluded + sum(invalid.values())
        notes = list(self.notes)
        if excluded:
            notes.append(f"excluded {excluded} of {total} combinations")
        if invalid:
            reasons = "; ".join(f"{n} x {reason}" for reason, n in invalid.items())
            notes.append(f"dropped {sum(invalid.values())} of {total} combinations whose config is invalid: {reasons}")
        if not kept:
            raise UserError(f"no setting left to run: {' '.join(notes[len(self.notes):])}")
        columns = []
        for key, values in grid.items():
            left = {s[key] for s in kept}
            if len(values) > 1 and len(left) == 1:
                notes.append(f"{key} is {left.pop()} in every setting left, so it is not a column")
            else:
                columns.append(key)
        warnings = [
            f"exclude entry {i} ({_label(entry)}) matches no combination"
            for i, entry in enumerate(exclude, 1)
            if i not in used
        ]
        return ResolvedSpace(self.name, self.description, columns, seeds, kept, notes, warnings)


def _label(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def _checked(part: str, key: Any, value: Any) -> Any:
    """``coerce`` naming the part of the space in its error (``grid qkv: ...``)."""
    return coerce(str(key), value, f"{part} {key}")


def _exclude_entry(index: int, entry: Any, grid: Mapping[str, Any]) -> dict[str, Any]:
    """One ``exclude`` entry as flat values over grid keys."""
    if not isinstance(entry, Mapping) or not entry:
        raise UserError(f"exclude entry {index} must map grid keys to values, got {entry!r}")
    unknown = [str(key) for key in entry if key not in grid]
    if unknown:
        raise UserError(f"exclude entry {index}: {', '.join(unknown)} not a grid key (grid keys: {', '.join(grid)})")
    return {key: _checked(f"exclude entry {index}", key, value) for key, value in entry.items()}

def space_name(text: Any, path: str) -> str:
    """A space name must be usable in folder names (sweeps are ``NAME-YYYYmmdd-HHMMSS``)."""
    if not isinstance(text, str) or not SPACE_NAME.fullmatch(text):
        raise UserError(f"space file {path}: name {text!r} must be 1-80 letters, digits, '_', '.' or '-'")
    return text
