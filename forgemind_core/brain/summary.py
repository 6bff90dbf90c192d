"""What a run's folder says about it: the planner's history, the run's summary, its status.

All of it is read from the run folder alone (:class:`~forgemind_core.base.runfolder.RunFolder`),
so it is the same for the process driving the run and for any other one (``forge status``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import (
    TIERS,
    Checkpoint,
    Decision,
    Estimate,
    EvalCase,
    Example,
    ForgeError,
    Goal,
    IterationSummary,
    Plan,
    UserError,
    from_dict,
    to_dict,
)
from forgemind_hookspecs.snapshots import read_snapshot

from forgemind_core.base.fsio import read_json
from forgemind_core.base.runfolder import RECORDED_STAGES, RunFolder
from forgemind_core.brain.decide import best_try
from forgemind_core.forge.estimates import estimate_error
from forgemind_core.foundry.stages import drops, latest_dataset
from forgemind_core.lorekeeper.runs import goal_of

__all__ = [
    "RunHistory",
    "all_eval_cases",
    "first_loss",
    "folder_summary",
    "history",
    "iteration_summary",
    "last_loss",
    "live_stage",
    "loss_values",
    "read_status",
    "run_summary",
    "stage_line",
]


def history(folder: RunFolder, *, upto: int | None = None) -> list[IterationSummary]:
    """What the planner sees: one summary per iteration that got as far as a plan."""
    out: list[IterationSummary] = []
    n = 1
    while folder.has_stage(n, "plan") and (upto is None or n <= upto):
        out.append(iteration_summary(folder, n))
        n += 1
    return out


def iteration_summary(folder: RunFolder, n: int) -> IterationSummary:
    """Iteration ``n`` of the run, from its stage files."""
    def stage(name: str) -> Any:
        return read_json(folder.stage_file(n, name))

    plan = from_dict(Plan, stage("plan")["plan"])
    gen = stage("generate") or {}
    filt = stage("review") or stage("filter") or {}
    ds = stage("dataset")
    est = stage("estimate")
    tr = stage("train")
    ev = stage("evaluate") or {}
    dec = stage("decide")
    checkpoint = from_dict(Checkpoint, tr["checkpoint"]) if tr else None
    scores: dict[str, dict[str, Any]] = {}
    for tier, report in (ev.get("reports") or {}).items():
        scores[tier] = dict(report.get("metrics", {}))
    cost = float(checkpoint.manifest.get("cost_usd", 0.0) or 0.0) if checkpoint else 0.0
    cost += float(gen.get("cost_usd", 0.0) or 0.0)
    return IterationSummary(
        iteration=n,
        plan=plan,
        generated=int(gen.get("generated", 0)),
        kept=int(filt.get("kept", 0)),
        dropped_by_reason=dict(filt.get("dropped_by_reason", {})),
        kept_by_category=dict(filt.get("kept_by_category", {})),
        dataset_id=ds["dataset"]["id"] if ds else None,
        estimate=from_dict(Estimate, est["estimate"]) if est else None,
        checkpoint_id=checkpoint.id if checkpoint else None,
        loss_curve=tuple(loss_values(checkpoint.manifest.get("loss_curve") or [])) if checkpoint else (),
        scores=scores,
        cost_usd=cost,
        seconds=sum(float((stage(s) or {}).get("seconds", 0.0)) for s in RECORDED_STAGES),
        decision=from_dict(Decision, dec["decision"]) if dec else None,
    )


def all_eval_cases(folder: RunFolder, suites: Mapping[str, Sequence[EvalCase]], iteration: int) -> list[EvalCase]:
    """Every evaluation case up to ``iteration``: the pack's suites and each plan's adversarial cases."""
    cases = [c for tier in suites.values() for c in tier]
    for n in range(1, iteration + 1):
        plan = read_json(folder.stage_file(n, "plan"))
        if plan:
            cases.extend(from_dict(EvalCase, c) for c in plan.get("adversarial_cases", []))
    return cases


class RunHistory:
    """A stage's ``ctx.history``: the kept examples of earlier iterations and every evaluation
    case so far (for decontamination). ``suites`` gives the pack's suites per tier when asked."""

    def __init__(self, folder: RunFolder, iteration: int, suites: Callable[[], Mapping[str, Sequence[EvalCase]]]) -> None:
        self._folder = folder
        self._iteration = iteration
        self._suites = suites

    def kept_examples(self) -> Iterator[Example]:
        previous = latest_dataset(self._folder, before=self._iteration)
        if previous is not None:
            yield from read_snapshot(previous.path)

    def eval_cases(self) -> Sequence[EvalCase]:
        return all_eval_cases(self._folder, self._suites(), self._iteration)


def run_summary(folder: RunFolder, goal: Goal, state: Mapping[str, Any], *, spent_usd: float) -> dict[str, Any]:
    """The run's summary: what ``forge run --json`` prints."""
    metric = goal.success.metric
    iterations = []
    checkpoints: dict[str, str] = {}
    for item in history(folder):
        tr = read_json(folder.stage_file(item.iteration, "train"))
        if item.checkpoint_id:
            checkpoints[item.checkpoint_id] = tr["checkpoint"]["path"]
        iterations.append({
            "iteration": item.iteration,
            "plan": to_dict(item.plan),
            "data": {"generated": item.generated, "kept": item.kept, "dropped": item.generated - item.kept,
                     "dropped_by_reason": dict(item.dropped_by_reason), "dataset_id": item.dataset_id},
            "estimate": to_dict(item.estimate) if item.estimate else None,
            "estimate_error": estimate_error(read_json(folder.stage_file(item.iteration, "estimate")), tr),
            "checkpoint": item.checkpoint_id,
            "cost_usd": item.cost_usd,
            "seconds": round(item.seconds, 2),
            "scores": {tier: float(m.get(metric, 0.0)) for tier, m in item.scores.items()},
            "decision": to_dict(item.decision) if item.decision else None,
        })
    stable_id = state.get("stable_checkpoint")
    stable = {"id": stable_id, "path": checkpoints.get(stable_id)} if stable_id else None
    best = best_try(iterations, goal.success)
    if best is not None:
        best = {**best, "path": checkpoints.get(best["id"])}
    return {
        "run_id": folder.run_id,
        "goal": goal.name,
        "status": state.get("status"),
        "outcome": state.get("outcome"),
        "reasons": state.get("reasons", []),
        "stable_checkpoint": stable,
        "best_checkpoint": best,
        "iterations": iterations,
        "cost_usd": spent_usd,
        "wall_s": round(float(state.get("elapsed_s", 0.0)), 2),
        "home": str(folder.home),
        "run_dir": str(folder.path),
    }


def folder_summary(home: Path, run_id: str) -> dict[str, Any]:
    """The summary of a run (finished or not) from its folder alone: what ``forge run --json``
    printed at its end, or would print now, with each iteration's ``loss_curve`` (the trainer's
    losses per logged step) added (``forge show RUN``, ``--plot``).

    :raises UserError: there is no such run in ``home``.
    """
    folder = RunFolder(Path(home), run_id)
    state = read_json(folder.state_file) or {}
    summary = run_summary(folder, goal_of(Path(home), run_id), state, spent_usd=float(state.get("spent_usd", 0.0)))
    curves = {item.iteration: list(item.loss_curve) for item in history(folder)}
    for item in summary["iterations"]:
        item["loss_curve"] = curves.get(item["iteration"], [])
    return summary


def live_stage(folder: RunFolder, metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The running stage of a run from the metric events its stages emitted (the registry's
    :meth:`~forgemind_hookspecs.backends.Registry.metrics` rows: iteration, stage, name, step,
    value, time): ``{iteration, stage, step, total_steps, loss, loss_name, eta_s}``, or ``None``
    when the latest metric belongs to a stage that has finished (its ``<stage>.json`` exists).

    ``loss`` is the latest value of a metric whose name ends in ``loss``; ``total_steps`` the
    iteration's estimate (``estimate.json``) while training; ``eta_s`` the remaining steps at
    the pace between the stage's first and latest metric (``None`` until there are two)."""
    if not metrics:
        return None
    last = max(metrics, key=lambda r: (int(r.get("iteration") or 0), float(r.get("time") or 0.0)))
    n, stage = int(last.get("iteration") or 0), str(last.get("stage") or "")
    finished = folder.has_stage(n, stage) if n else (folder.path / f"{stage}.json").exists()
    if finished or not stage:
        return None
    rows = sorted((r for r in metrics if int(r.get("iteration") or 0) == n and r.get("stage") == stage),
                  key=lambda r: (float(r.get("time") or 0.0), float(r.get("step") or 0)))
    losses = [r for r in rows if str(r.get("name", "")).endswith("loss")]
    latest = losses[-1] if losses else rows[-1]
    step = int(latest.get("step") or 0)
    total = None
    if stage == "train" and n:
        estimate = read_json(folder.stage_file(n, "estimate")) or {}
        total = (estimate.get("estimate") or {}).get("steps")
    eta = None
    paced = losses or rows
    if total and len(paced) >= 2:
        first = paced[0]
        done = step - int(first.get("step") or 0)
        spent = float(latest.get("time") or 0.0) - float(first.get("time") or 0.0)
        if done > 0 and spent > 0:
            eta = max(0.0, (int(total) - step) * spent / done)
    return {
        "iteration": n,
        "stage": stage,
        "step": step,
        "total_steps": int(total) if total else None,
        "loss": float(latest["value"]) if losses else None,
        "loss_name": str(latest.get("name")) if losses else None,
        "eta_s": None if eta is None else round(eta, 1),
    }


def stage_line(stage: str, data: Mapping[str, Any]) -> str:
    """What the loop reports when ``stage`` of an iteration finished with ``data`` (its
    ``<stage>.json``); ``""`` when there is nothing to say."""
    if stage == "generate":
        return f"  generate: {data['generated']} examples" + (f" ({data['note']})" if data.get("note") else "")
    if stage == "filter":
        return f"  filter: kept {data['kept']}, dropped {data['dropped']} ({drops(data['dropped_by_reason']) or 'none'})"
    if stage == "review":
        return (f"  review: {data['items']} items, {data['approved']} approved, {data['rejected']} rejected, "
                f"{data['edited']} edited, {data['pending']} pending") if data["items"] else ""
    if stage == "dataset":
        return f"  dataset: {data['dataset']['n_examples']} examples ({data['dataset']['id']})"
    if stage == "estimate":
        est = from_dict(Estimate, data["estimate"])
        measured = est.details.get("measured_iterations") if est.basis == "measured" else None
        return (f"  estimate: {est.tokens:,} tokens, {est.steps} steps, ~{est.seconds:.0f} s"
                + (f" (measured in iteration{'s' * (len(measured) > 1)} {', '.join(map(str, measured))})"
                   if measured else "")
                + f", ${est.total_cost_usd:.4f}")
    if stage == "train":
        curve = data["checkpoint"].get("manifest", {}).get("loss_curve") or []
        return (f"  train: loss {first_loss(curve):.3f} -> {last_loss(curve):.3f} ({data['checkpoint']['path']})"
                if curve else "")
    if stage == "evaluate":
        return "  scores: " + " · ".join(f"{t} {s:.0%}" for t, s in data["scores"].items())
    return ""


def loss_values(curve: Sequence[Any]) -> list[float]:
    """A trainer's loss curve (points as ``{"loss": ...}``, ``[step, loss]`` or bare numbers) as losses."""
    values = []
    for point in curve:
        if isinstance(point, Mapping):
            values.append(float(point.get("loss", 0.0)))
        elif isinstance(point, (list, tuple)):
            values.append(float(point[-1]))
        else:
            values.append(float(point))
    return values


def first_loss(curve: Sequence[Any]) -> float:
    return loss_values(curve)[0]


def last_loss(curve: Sequence[Any]) -> float:
    return loss_values(curve)[-1]


def read_status(home: Path, run_id: str,
                metrics: Callable[[], Sequence[Mapping[str, Any]]] | None = None) -> dict[str, Any]:
    """A run's state from its folder alone (no database), safe while the run writes.

    ``metrics``, when given, is asked for the run's metric rows while a process drives the run;
    ``running`` is then :func:`live_stage` of them (step, loss, ETA of the running stage), and
    ``None`` when the run is not being driven, the stage emits no metrics or the rows cannot be
    read right now (a busy registry: the status never waits on it)."""
    folder = RunFolder(Path(home), run_id)
    state = read_json(folder.state_file)
    if state is None:
        raise UserError(f"no run {run_id!r} in {home}")
    iterations = []
    for n in folder.iterations():
        ev = read_json(folder.stage_file(n, "evaluate")) or {}
        iterations.append({"iteration": n, "stages_done": folder.finished_stages(n), "scores": ev.get("scores", {})})
    driving = None
    lock = folder.lock_file
    if lock.exists() and state.get("status") != "finished":
        with contextlib.suppress(OSError, ValueError):
            import fcntl

            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                driving = int(lock.read_text() or 0) or None
            finally:
                os.close(fd)
    running = None
    if driving and metrics is not None:
        with contextlib.suppress(ForgeError):
            running = live_stage(folder, metrics())
    return {**state, "iterations": iterations, "driven_by_pid": driving, "running": running, "tiers": list(TIERS)}
