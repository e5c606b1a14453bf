"""The experiment trackers a sweep also reports to (``run --log-to``), through Ray Tune's own
logger callbacks: MLflow (``mlflow[=URI]``) and Weights & Biases (``wandb[=PROJECT]``).
TensorBoard needs nothing: Ray writes its event files next to every trial's checkpoints.

Everything that can fail is checked before Ray starts (the package, MLflow's store, a W&B
login), so a missing piece is one ``error:`` line, not a traceback in the driver.
The trackers are part of the sweep's saved settings, and Ray restores its callbacks on
``--resume``: a resumed trial continues its own MLflow or W&B run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from typing import Any

from tune_selcopy.errors import UserError, one_line

TRACKERS = {"mlflow": "tune_selcopy[mlflow]", "wandb": "tune_selcopy[wandb]"}
PREFLIGHT_TIMEOUT_S = 10


def parse(values: Sequence[str]) -> tuple[str, ...]:
    """``--log-to`` values in a canonical form (``mlflow``, ``mlflow=URI``, ``wandb``,
    ``wandb=PROJECT``), each tracker at most once; ``UserError`` otherwise."""
    seen: dict[str, str] = {}
    for value in values:
        name, _, target = value.partition("=")
        if name not in TRACKERS or ("=" in value and not target):
            raise UserError(f"--log-to {value!r}: use mlflow, mlflow=URI, wandb or wandb=PROJECT")
        if name in seen:
            raise UserError(f"--log-to {name} given twice ({seen[name]!r} and {value!r})")
        seen[name] = value
    return tuple(seen[name] for name in TRACKERS if name in seen)


def _target(log_to: Sequence[str], name: str) -> tuple[bool, str | None]:
    """Whether tracker ``name`` is on, and what follows its ``=``."""
    for value in log_to:
        tracker, _, target = value.partition("=")
        if tracker == name:
            return True, target or None
    return False, None


@contextlib.contextmanager
def _quick_http() -> Iterator[None]:
    """MLflow's HTTP client retries for minutes by default; a check before Ray should not."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(PREFLIGHT_TIMEOUT_S))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check(log_to: Sequence[str]) -> list[str]:
    """Before Ray starts: every tracker in ``log_to`` can be used here. Returns one line per
    tracker saying where it logs; ``UserError`` for a missing package, an MLflow store that
    does not open, or W&B without a login (and not offline)."""
    lines = []
    for value in log_to:
        name = value.partition("=")[0]
        if importlib.util.find_spec(name) is None:
            raise UserError(f"--log-to {name}: the {name} package is not installed: pip install '{TRACKERS[name]}'")
    on, uri = _target(log_to, "mlflow")
    if on:
        import mlflow
        from mlflow.tracking import MlflowClient

        where = uri or mlflow.get_tracking_uri()
        try:
            with _quick_http():
                MlflowClient(tracking_uri=where).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any store failure: say it in one line
            raise UserError(f"--log-to mlflow: cannot open the MLflow store {where}: {one_line(exc, 300)}") from None
        lines.append(f"mlflow: logging every trial to {where}")
    on, project = _target(log_to, "wandb")
    if on:
        mode = os.environ.get("WANDB_MODE", "online")
        if mode not in ("offline", "disabled"):
            from ray.air.integrations.wandb import _set_api_key

            try:
                _set_api_key()  # Ray's own lookup: WANDB_API_KEY, a `wandb login`, a key hook
            except ValueError:
                raise UserError(
                    "--log-to wandb: no W&B login: run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline "
                    "to write the runs locally (upload them later with `wandb sync`)"
                ) from None
        files = f"; its run files under {os.path.join(wandb_dir(), 'wandb')}"
        lines.append(f"wandb: logging every trial to project {project or os.environ.get('WANDB_PROJECT') or '<space>'}"
                     f" ({mode}{files})")
    return lines


def wandb_dir() -> str:
    """The folder W&B writes its local run files under (``<it>/wandb/``): ``WANDB_DIR``, else
    the folder the sweep was started in, as for any W&B script."""
    return os.path.abspath(os.environ.get("WANDB_DIR") or ".")


def callbacks(log_to: Sequence[str], space: str, sweep: str) -> list[Any]:
    """Ray Tune callbacks for ``log_to``: the MLflow experiment is the space (runs tagged with
    the sweep), the W&B project PROJECT, else ``WANDB_PROJECT``, else the space (runs grouped
    by sweep). One run per trial in both."""
    out: list[Any] = []
    on, uri = _target(log_to, "mlflow")
    if on:
        from tune_selcopy.sweeps.tracker_callbacks import MLflowLogger

        out.append(MLflowLogger(tracking_uri=uri, experiment_name=space, tags={"sweep": sweep, "space": space}))
    on, project = _target(log_to, "wandb")
    if on:
        from tune_selcopy.sweeps.tracker_callbacks import WandbLogger

        # resume="allow": a trial restarted by --resume continues its run (its id is the trial id).
        # dir: W&B's own default folder (./wandb, or WANDB_DIR), not the trial's folder, where
        # Ray's logging actor would write it: Ray may copy that folder to the storage before
        # the actor of a sweep's last trial has written its run (offline runs were cut short).
        out.append(WandbLogger(project=project or os.environ.get("WANDB_PROJECT") or space, group=sweep,
                                       resume="allow", dir=wandb_dir()))
    return out
