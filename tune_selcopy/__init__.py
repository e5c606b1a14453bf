"""tune_selcopy: Ray Tune sweeps of the "very selective copying" attention experiments.

The commands (``run``, ``analyze``, ``train``, ``data``) are this package's top-level modules;
``science`` is the experiment (torch, no Ray), ``sweeps`` runs it on Ray, ``analysis`` turns the
Parquet logs into tables, verdicts and plots (no torch, no Ray).
"""

from pathlib import Path as _Path

# The space modules live in the repository's search_spaces/ folder, installed as
# tune_selcopy/search_spaces (pyproject's package-dir). Run from a checkout, e.g. a Ray job's
# uploaded working dir, that folder sits beside this package: search the checkout too, so that
# tune_selcopy.search_spaces is the checkout's folder and an edited space is the one that runs.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "search_spaces" / "__init__.py").is_file():
    __path__.append(str(_checkout))
