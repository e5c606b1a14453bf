"""tune_selcopy: Ray Tune sweeps of the "very selective copying" attention experiments.

The commands (``run``, ``analyze``, ``train``, ``data``) are this package's top-level modules;
``science`` is the experiment (torch, no Ray), ``sweeps`` runs it on Ray, ``analysis`` turns the
Parquet logs into tables, verdicts and plots (no torch, no Ray).
"""

import importlib.util as _util
import sys as _sys
from pathlib import Path as _Path

# The space modules live in the repository's search_spaces/ folder, installed as
# tune_selcopy/search_spaces (pyproject's package-dir). Run from a checkout, e.g. a Ray job's
# uploaded working dir, that folder sits beside this package: it is then the package
# tune_selcopy.search_spaces, so that an edited space is the one that runs (and nothing
# else of the checkout becomes part of this package).
_spaces = _Path(__file__).resolve().parent.parent / "search_spaces"
if (_spaces.parent / "pyproject.toml").is_file() and (_spaces / "__init__.py").is_file():
    _spec = _util.spec_from_file_location(f"{__name__}.search_spaces", _spaces / "__init__.py",
                                          submodule_search_locations=[str(_spaces)])
    _sys.modules[_spec.name] = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_sys.modules[_spec.name])
