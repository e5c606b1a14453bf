"""Where a space comes from: a module of ``tune_selcopy.search_spaces`` (the repository's
``search_spaces/`` folder, installed under that name), our YAML space format, or an
experiment file of the reference tool (``reference_files``).

The space modules import ``Space`` from ``spaces``; this module finds them by package name
at run time, so neither imports the other at import time.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tune_selcopy.errors import UserError
from tune_selcopy.sweeps.reference_files import space_from_reference
from tune_selcopy.sweeps.spaces import Space, space_name

SPACES_PACKAGE = "tune_selcopy.search_spaces"
SPACE_FILE_SUFFIXES = (".yaml", ".yml")


def available_spaces() -> list[str]:
    """The names of the space modules (``_common`` and other ``_``-names are helpers)."""
    modules = pkgutil.iter_modules(importlib.import_module(SPACES_PACKAGE).__path__)
    return sorted(m.name for m in modules if not m.name.startswith("_"))


def is_space_file(spec: str) -> bool:
    """A space argument names a file (rather than a module) when it looks like a path."""
    return spec.endswith(SPACE_FILE_SUFFIXES) or os.sep in spec or os.path.isfile(spec)


def load_space(spec: str) -> Space:
    """A module name (``attn_act``) or a YAML file: our format or a reference experiment."""
    if is_space_file(spec):
        return load_space_file(spec)
    known = available_spaces()
    if spec not in known:
        raise UserError(f"unknown space {spec!r}; available: {', '.join(known)}, or a .yaml space file")
    space = getattr(importlib.import_module(f"{SPACES_PACKAGE}.{spec}"), "SPACE", None)
    if not isinstance(space, Space):
        raise UserError(f"search_spaces/{spec}.py defines no SPACE = Space(...)")
    return space


def space_name_of(spec: str) -> str:
    """The space name a SPACE argument stands for (logs and saved sweeps carry names):
    a module name is itself, a file declares its own (a missing file is an error)."""
    return load_space_file(spec).name if is_space_file(spec) else spec


def read_yaml(path: str) -> Any:
    """``yaml.safe_load`` of a file; every failure is one line naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise UserError(f"space file {path} does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot read space file {path}: {exc.strerror}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise UserError(f"space file {path} is not valid YAML: {where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"space file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None


SPACE_FILE_KEYS = ("name", "description", "seeds", "grid", "fixed", "exclude")


def load_space_file(path: str) -> Space:
    data = read_yaml(path)
    if isinstance(data, Mapping) and "matrix" in data:
        return space_from_reference(data, path)
    return space_from_yaml(data, path)



def space_from_yaml(data: Any, path: str) -> Space:
    """Our space file format (docs/sweeps.md); every value is checked by ``Space.resolve``."""
    if not isinstance(data, Mapping):
        raise UserError(f"space file {path}: expected a mapping with keys {', '.join(SPACE_FILE_KEYS)}")
    unknown = [str(key) for key in data if key not in SPACE_FILE_KEYS]
    if unknown:
        raise UserError(f"space file {path}: unknown key {', '.join(unknown)}; known: {', '.join(SPACE_FILE_KEYS)}")
    missing = [key for key in ("seeds", "grid") if key not in data]
    if missing:
        raise UserError(f"space file {path}: missing {', '.join(missing)}")
    seeds = data["seeds"]
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"space file {path}: seeds must be an integer >= 1, got {seeds!r}")
    grid, fixed = data["grid"], data.get("fixed") or {}
    for part, value in (("grid", grid), ("fixed", fixed)):
        if not isinstance(value, Mapping):
            raise UserError(f"space file {path}: {part} must map trial-config keys to values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"space file {path}: grid {key}: expected a non-empty list of values, got {values!r}")
    exclude = data.get("exclude") or []
    if not isinstance(exclude, list):
        raise UserError(f"space file {path}: exclude must be a list of partial settings")
    return Space(
        name=space_name(data.get("name", Path(path).stem), path),
        description=str(data.get("description", "")),
        grid=grid,
        seeds=seeds,
        fixed=fixed,
        exclude=exclude,
        source=path,
    )
