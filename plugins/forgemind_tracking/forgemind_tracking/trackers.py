"""The trackers behind ``report_to``: MLflow, TensorBoard, Weights & Biases.

Each takes ``(home, run_id, goal_name, ids)`` (``ids`` is the recorder's persisted map where a
tracker keeps its own run id, so a resumed run continues the same tracker run) and offers
``start``, ``scalars``, ``text``, ``model``, ``flush``, ``finish`` and ``close``. Every library is
imported in the constructor: a goal that does not name a tracker never imports it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["TRACKERS", "MlflowTracker", "TensorBoardTracker", "Tracker", "WandbTracker", "flatten"]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"backend": "hf"}}`` -> ``{"train.backend": "hf"}``; lists as JSON."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "forgemind"


class Tracker:
    """What the recorder calls; every method may raise (the recorder turns that into a warning)."""

    name: ClassVar[str] = ""

    def __init__(self, home: str, run_id: str, goal_name: str, ids: dict[str, str]) -> None:
        self.home, self.run_id, self.goal_name, self.ids = home, run_id, goal_name, ids

    def start(self, goal: Mapping[str, Any], params: Mapping[str, str]) -> None:
        """The run began: its goal, as a nested mapping and flattened to dotted params."""

    def scalars(self, values: Mapping[str, float], step: int, axis: str) -> None:
        """Log ``values`` at ``step`` of ``axis`` (``train``: the run's train step; ``iteration``)."""

    def text(self, key: str, text: str, step: int) -> None:
        """Log a text (the planner's reasons) under ``key``."""

    def model(self, path: str, checkpoint_id: str) -> None:
        """Register the promoted checkpoint folder ``path`` as the goal's ``stable`` model."""

    def flush(self) -> None:
        """Make what was logged durable (end of a batch of events)."""

    def finish(self, outcome: str) -> None:
        """The run ended with ``outcome``."""
        self.close()

    def close(self) -> None:
        """Release the library's resources."""


class MlflowTracker(Tracker):
    """MLflow through ``MlflowClient``: the tracking URI, experiment and registry from MLflow's own
    settings (``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, ``MLFLOW_EXPERIMENT_NAME``); the
    experiment defaults to the goal's name."""

    name = "mlflow"

    def __init__(self, home: str, run_id: str, goal_name: str, ids: dict[str, str]) -> None:
        super().__init__(home, run_id, goal_name, ids)
        from mlflow import MlflowClient

        self.client = MlflowClient()
        if "mlflow" not in ids:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or goal_name
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
            run = self.client.create_run(
                experiment_id, run_name=run_id, tags={"forgemind.run_id": run_id, "forgemind.goal": goal_name}
            )
            ids["mlflow"] = run.info.run_id
        self.mlflow_run = ids["mlflow"]

    def start(self, goal: Mapping[str, Any], params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        batch = [Param(key[:250], value[:6000]) for key, value in params.items()]
        for at in range(0, len(batch), 100):
            self.client.log_batch(self.mlflow_run, params=batch[at : at + 100])
        self.client.log_dict(self.mlflow_run, dict(goal), "goal.json")

    def scalars(self, values: Mapping[str, float], step: int, axis: str) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        if metrics:
            self.client.log_batch(self.mlflow_run, metrics=metrics)

    def text(self, key: str, text: str, step: int) -> None:
        self.client.log_text(self.mlflow_run, text, f"{key}.txt")

    def model(self, path: str, checkpoint_id: str) -> None:
        from mlflow.exceptions import MlflowException

        self.client.log_artifacts(self.mlflow_run, path, "checkpoint")
        name = _slug(self.goal_name)
        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if "RESOURCE_ALREADY_EXISTS" not in str(error.error_code):
                raise
        run = self.client.get_run(self.mlflow_run)
        version = self.client.create_model_version(
            name, source=f"{run.info.artifact_uri}/checkpoint", run_id=self.mlflow_run,
            tags={"forgemind.checkpoint_id": checkpoint_id, "forgemind.run_id": self.run_id},
        )
        self.client.set_registered_model_alias(name, "stable", version.version)

    def finish(self, outcome: str) -> None:
        self.client.set_tag(self.mlflow_run, "forgemind.outcome", outcome)
        self.client.set_terminated(self.mlflow_run, "FAILED" if outcome == "failed" else "FINISHED")


class TensorBoardTracker(Tracker):
    """TensorBoard event files (tensorboard's own writer, no TensorFlow or torch), one folder
    per run under ``FORGEMIND_TENSORBOARD_DIR`` (default ``<home>/tensorboard``)."""

    name = "tensorboard"

    def __init__(self, home: str, run_id: str, goal_name: str, ids: dict[str, str]) -> None:
        super().__init__(home, run_id, goal_name, ids)
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        root = os.environ.get("FORGEMIND_TENSORBOARD_DIR") or str(Path(home) / "tensorboard")
        self.logdir = str(Path(root) / run_id)
        ids["tensorboard"] = self.logdir
        self.writer = EventFileWriter(self.logdir)

    def _add(self, summary: Any, step: int) -> None:
        import time

        from tensorboard.compat.proto.event_pb2 import Event

        self.writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def start(self, goal: Mapping[str, Any], params: Mapping[str, str]) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        table = "\n".join(f"| `{k}` | `{v}` |" for k, v in params.items())
        self._add(text_pb("goal", "| field | value |\n|---|---|\n" + table), 0)

    def scalars(self, values: Mapping[str, float], step: int, axis: str) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._add(Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()]), step)

    def text(self, key: str, text: str, step: int) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._add(text_pb(key.split("/")[0], text), step)

    def model(self, path: str, checkpoint_id: str) -> None:
        self.text("promotion", f"promoted checkpoint {checkpoint_id} as stable: {path}", 0)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """Weights & Biases: ``WANDB_MODE``, ``WANDB_DIR``, ``WANDB_PROJECT`` (default: the goal's
    name), ``WANDB_ENTITY``, ``WANDB_API_KEY`` as wandb reads them; the W&B run id is derived from
    the ForgeMind run id, so a resumed run continues it."""

    name = "wandb"

    def __init__(self, home: str, run_id: str, goal_name: str, ids: dict[str, str]) -> None:
        super().__init__(home, run_id, goal_name, ids)
        import wandb

        self.wandb = wandb
        wandb_id = ids.setdefault("wandb", _slug(run_id)[:64])
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or _slug(goal_name), id=wandb_id, name=run_id,
            resume="allow", reinit="create_new", tags=["forgemind"],
        )
        self.run.define_metric("train/step")
        self.run.define_metric("train/*", step_metric="train/step")
        self.run.define_metric("iteration")
        for prefix in ("eval/*", "data/*"):
            self.run.define_metric(prefix, step_metric="iteration")

    def start(self, goal: Mapping[str, Any], params: Mapping[str, str]) -> None:
        self.run.config.update(dict(goal), allow_val_change=True)  # type: ignore[no-untyped-call]

    def scalars(self, values: Mapping[str, float], step: int, axis: str) -> None:
        self.run.log({**values, ("train/step" if axis == "train" else "iteration"): step})

    def text(self, key: str, text: str, step: int) -> None:
        self.run.summary[key] = text

    def model(self, path: str, checkpoint_id: str) -> None:
        artifact = self.wandb.Artifact(
            f"{_slug(self.goal_name)}-model", type="model",
            metadata={"checkpoint_id": checkpoint_id, "forgemind_run": self.run_id},
        )
        artifact.add_dir(path)
        self.run.log_artifact(artifact, aliases=["stable"])

    def finish(self, outcome: str) -> None:
        self.run.summary["forgemind/outcome"] = outcome
        self.run.finish(exit_code=1 if outcome == "failed" else 0)

    def close(self) -> None:
        self.run.finish()


TRACKERS: dict[str, type[Tracker]] = {
    t.name: t for t in (MlflowTracker, TensorBoardTracker, WandbTracker)
}
