"""Read-only views of a run's folder: the goal it started with, how far it got, the goal that
reproduces it (``forge show RUN --config``).

The run folder (:class:`~forgemind_core.base.runfolder.RunFolder`) is the source of truth; nothing
here writes. Writing a goal as YAML is the Brain's (``forgemind_core.brain.goalyaml``), so
:func:`config_yaml` takes the writer from its caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attrs import evolve
from forgemind_hookspecs import BackendChoice, Goal, UserError, from_dict

from forgemind_core.base.fsio import read_json
from forgemind_core.base.runfolder import RunFolder

__all__ = ["config_yaml", "flatten", "goal_of", "last_iteration", "pinned_goal", "run_parent"]


def goal_of(home: Path, run_id: str) -> Goal:
    """The goal a run was started with (its ``goal.json``).

    :raises UserError: there is no such run in ``home``.
    """
    data = read_json(RunFolder(Path(home), run_id).goal_file)
    if data is None:
        raise UserError(f"no run {run_id!r} in {home}", field="run")
    return from_dict(Goal, data)


def last_iteration(run: RunFolder) -> int:
    """The highest iteration of a run that got as far as a plan (0 if none)."""
    n = 0
    while run.has_stage(n + 1, "plan"):
        n += 1
    return n


def run_parent(run: RunFolder) -> dict[str, Any]:
    """The ``parent`` link of a run's ``state.json`` (``{}`` for a run that is not a fork):
    ``run_id``, ``iteration``, ``branch``, ``parent_branch``, ``changed``, ``rerun_from``, ``reused``."""
    state = read_json(run.state_file) or {}
    return dict(state.get("parent") or {})


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` -> ``{"train.epochs": 2}``; list items by index."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, (list, tuple)) and value:
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = list(value) if isinstance(value, tuple) else value
    return out


def pinned_goal(home: Path, run_id: str, iteration: int | None = None) -> Goal:
    """The goal that reproduces a run (``iteration=None``: the goal as started) or one
    iteration: the same goal with the recorded plans of iterations 1..N pinned through the
    ``replay`` planner and ``limits.max_iterations: N``.

    :raises UserError: no such run, or an iteration it does not have.
    """
    goal = goal_of(home, run_id)
    if iteration is None:
        return goal
    run = RunFolder(Path(home), run_id)
    last = last_iteration(run)
    if not 1 <= iteration <= last:
        raise UserError(f"run {run_id!r} has iterations 1 to {last}, not {iteration}", field="iteration")
    plans = [read_json(run.stage_file(n, "plan"))["plan"] for n in range(1, iteration + 1)]
    return evolve(
        goal,
        planner=BackendChoice("replay", {"plans": tuple(plans)}),
        limits=evolve(goal.limits, max_iterations=iteration),
    )


def config_yaml(home: Path, run_id: str, iteration: int | None = None, *,
                goal_to_yaml: Callable[[Goal], str]) -> str:
    """A goal file (YAML) that runs again as is and reproduces the run or the iteration: a
    comment header (what it reproduces, the branch, the fork point) and ``goal_to_yaml`` of
    :func:`pinned_goal`."""
    goal = pinned_goal(home, run_id, iteration)
    parent = run_parent(RunFolder(Path(home), run_id))
    what = f"iteration {iteration} of run {run_id}" if iteration else f"run {run_id}"
    head = [f"# reproduces {what}", f"# branch: {parent.get('branch') or 'main'}"]
    if parent.get("run_id"):
        head.append(f"# forked from {parent['run_id']} at iteration {parent.get('iteration')}")
    if iteration:
        head.append("# the recorded plans are pinned with the replay planner")
    return "\n".join(head) + "\n" + goal_to_yaml(goal)
