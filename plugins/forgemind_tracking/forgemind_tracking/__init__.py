"""ForgeMind recorder: a goal's ``report_to`` sends the run to experiment trackers.

On the ``forgemind_record`` hook. A run whose goal says ``report_to: [mlflow, tensorboard,
wandb]`` gets, in each tracker: the goal config (params / config / text), the per-step train
loss (``train/loss`` over a step counted across the run's iterations), per-tier and per-category
scores per iteration (``eval/<tier>/<metric>``, ``eval/<tier>/category/<category>``, step =
iteration), data counts (``data/generated``, ``data/rejected``, ``data/examples``), the planner's
reasons (text per iteration), and, on promotion, the model: an MLflow registered model version
aliased ``stable``, a W&B ``model`` artifact aliased ``stable``.

Each tracker honours its library's own settings (``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_NAME``, ``WANDB_MODE``, ``WANDB_DIR``, ``WANDB_PROJECT``, ...); TensorBoard
writes under ``FORGEMIND_TENSORBOARD_DIR`` (default ``<home>/tensorboard``), one folder per run.
A tracker that fails never fails the run: one warning, that tracker is switched off for the run,
the run goes on; the registry stays the source of truth.

A repeated event (resume after a crash) is a no-op: the last ``seq`` handled per run is kept in
``<home>/tracking/<run>.json``, with the trackers' own run ids, so a resumed run, even in a new
process, continues the same tracker runs. The libraries are imported only when a goal asks for them.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import Event, hookimpl

from forgemind_tracking.trackers import TRACKERS, Tracker, flatten

__all__ = ["TRACKERS", "TrackerWarning", "forgemind_record", "reset"]


class TrackerWarning(UserWarning):
    """A tracker failed; the run goes on without it."""


class _Run:
    def __init__(self, home: str, run_id: str) -> None:
        self.file = Path(home) / "tracking" / f"{run_id}.json"
        self.home = home
        self.run_id = run_id
        state: dict[str, Any] = {}
        if self.file.is_file():
            state = json.loads(self.file.read_text(encoding="utf-8"))
        self.report_to: list[str] = list(state.get("report_to", []))
        self.goal_name: str = state.get("goal_name", "forgemind")
        self.last_seq: int = int(state.get("last_seq", -1))
        self.train_step: int = int(state.get("train_step", 0))
        self.ids: dict[str, str] = dict(state.get("ids", {}))
        self.counts: dict[str, int] = {}
        self.rejected: set[str] = set()
        self.checkpoints: dict[str, str] = dict(state.get("checkpoints", {}))
        self.trackers: dict[str, Tracker] = {}
        self.off: set[str] = set(state.get("off", []))

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "report_to": self.report_to, "goal_name": self.goal_name, "last_seq": self.last_seq,
            "train_step": self.train_step, "ids": self.ids, "checkpoints": self.checkpoints,
            "off": sorted(self.off),
        }
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.file)

    def each(self, what: str, *args: Any) -> None:
        """Call ``what`` on every live tracker; a failure is one warning and that tracker is off."""
        for name in self.report_to:
            if name in self.off:
                continue
            try:
                tracker = self.trackers.get(name)
                if tracker is None and what in ("flush", "close"):
                    continue  # nothing open to flush or close: never open a tracker run for it
                if tracker is None:
                    tracker = TRACKERS[name](self.home, self.run_id, self.goal_name, self.ids)
                    self.trackers[name] = tracker
                getattr(tracker, what)(*args)
            except Exception as error:  # a tracker never fails the run
                self.off.add(name)
                self.trackers.pop(name, None)
                warnings.warn(
                    f"tracker {name!r} failed ({type(error).__name__}: {error}); "
                    f"run {self.run_id} goes on without it",
                    TrackerWarning,
                    stacklevel=2,
                )


_RUNS: dict[tuple[str, str], _Run] = {}


def reset() -> None:
    """Close every open tracker run and forget the in-memory state (tests, long-lived processes)."""
    for run in _RUNS.values():
        run.each("close")
    _RUNS.clear()


def _run(home: str, run_id: str) -> _Run:
    key = (str(Path(home).resolve()), run_id)
    if key not in _RUNS:
        _RUNS[key] = _Run(home, run_id)
    return _RUNS[key]


@hookimpl
def forgemind_record(events: Sequence[Event], home: str) -> None:
    """Send the events of runs whose goal has ``report_to`` to those trackers."""
    touched: set[tuple[str, str]] = set()
    for event in events:
        run = _run(home, event.run_id)
        if event.seq <= run.last_seq:
            continue  # delivered again after a resume
        if event.kind == "run.started":
            goal = event.payload.get("goal") or {}
            run.report_to = [str(name) for name in goal.get("report_to") or () if str(name) in TRACKERS]
            run.goal_name = str(goal.get("name") or "forgemind")
        if not run.report_to:
            run.last_seq = event.seq
            continue
        _handle(run, event)
        run.last_seq = event.seq
        touched.add((home, event.run_id))
    for home_, run_id in touched:
        run = _run(home_, run_id)
        run.save()
        if run.last_seq >= 0 and run.report_to:
            run.each("flush")


def _handle(run: _Run, event: Event) -> None:
    payload: Mapping[str, Any] = event.payload
    it = event.iteration
    kind = event.kind
    if kind == "run.started":
        goal = dict(payload.get("goal") or {})
        run.each("start", goal, flatten(goal))
    elif kind == "metric" and payload.get("name") == "train.loss":
        run.each("scalars", {"train/loss": float(payload["value"]), "train/iteration": float(it)}, run.train_step, "train")
        run.train_step += 1
    elif kind == "examples" and event.stage == "generate":
        run.counts[f"generated{it}"] = run.counts.get(f"generated{it}", 0) + len(payload.get("examples") or ())
    elif kind == "verdicts" and event.stage == "filter":
        run.rejected.update(str(v.get("example_id")) for v in payload.get("verdicts") or () if not v.get("keep", True))
    elif kind == "dataset":
        dataset = payload.get("dataset") or {}
        values = {"data/examples": float(dataset.get("n_examples", 0))}
        if f"generated{it}" in run.counts:
            values["data/generated"] = float(run.counts.pop(f"generated{it}"))
            values["data/rejected"] = float(len(run.rejected))
        run.rejected.clear()
        run.each("scalars", values, it, "iteration")
    elif kind == "checkpoint":
        checkpoint = payload.get("checkpoint") or {}
        if checkpoint.get("id") and checkpoint.get("path"):
            run.checkpoints[str(checkpoint["id"])] = str(checkpoint["path"])
    elif kind == "eval.report":
        report = payload.get("report") or {}
        tier = str(report.get("tier", "full"))
        values = {}
        for key, value in (report.get("metrics") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f"eval/{tier}/{key}"] = float(value)
            elif key == "per_category" and isinstance(value, Mapping):
                values.update({f"eval/{tier}/category/{c}": float(v) for c, v in value.items()})
        run.each("scalars", values, it, "iteration")
    elif kind in ("plan", "decision"):
        decision = payload.get("decision") or {}
        reasons = list(decision.get("reasons") or ())
        head = f"{kind} of iteration {it}" + (f": {decision.get('action')}" if decision.get("action") else "")
        run.each("text", f"{kind}/iteration_{it}", "\n".join([head, *(f"- {r}" for r in reasons)]), it)
    elif kind == "promotion":
        checkpoint_id = str(payload.get("checkpoint_id") or "")
        path = run.checkpoints.get(checkpoint_id)
        if path and Path(path).exists():
            run.each("model", path, checkpoint_id)
    elif kind == "run.finished":
        run.each("finish", str(payload.get("outcome") or ""))
        run.trackers.clear()
