"""Ray Tune's MLflow and W&B callbacks as a sweep needs them (``run --log-to``; the rest of
the trackers is ``trackers``). A module of its own, importing Ray: Ray pickles the callbacks
into its experiment state and restores them by these names on ``--resume``."""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor


class MLflowLogger(MLflowLoggerCallback):
    """Ray's MLflow callback, with three changes: metric names MLflow accepts (it refuses
    ``%``: ``validation_sample_error%`` is logged as ``validation_sample_error_pct``), the
    config only as params (not again as metrics with every validation), and a trial that
    restarts after ``--resume`` continues its own run instead of opening a second."""

    def log_trial_start(self, trial: Any) -> None:
        if trial not in self._trial_runs:
            client = self.mlflow_util._get_client()
            found = client.search_runs(
                [self.mlflow_util.experiment_id],
                filter_string=f"tags.trial_name = '{trial}' and tags.sweep = '{self.tags['sweep']}'",
                max_results=1,
            )
            if found:
                self._trial_runs[trial] = found[0].info.run_id
                client.update_run(found[0].info.run_id, status="RUNNING")
        super().log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        # The config is logged once as params; Ray's result repeats it with every report.
        metrics = {mlflow_name(key): value for key, value in result.items() if key != "config"}
        super().log_trial_result(iteration, trial, metrics)


def mlflow_name(metric: str) -> str:
    """A metric's name as MLflow accepts it: ``%`` becomes ``_pct``."""
    return metric.replace("%", "_pct")


class _FlushingWandbActor(_WandbLoggingActor):
    """Ray's W&B logging actor, which Ray kills as soon as its loop returns: W&B's service
    process may not have written the run out by then (offline runs of a sweep's last trials
    were left with nothing but a header). ``wandb.teardown`` waits for it."""

    def run(self) -> None:
        super().run()
        self._wandb.teardown()


class WandbLogger(WandbLoggerCallback):
    """Ray's W&B callback, with a logging actor that waits until its run is written."""

    _logger_actor_cls = _FlushingWandbActor
