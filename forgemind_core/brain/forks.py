"""Fork runs: ``forge fork`` (and the Brain's side of ``forge show --config`` and ``forge diff``).

A run's folder (``<home>/runs/<id>/``: ``goal.json``, ``base.json``, ``iter-<n>/<stage>.json``) is
the source of truth. A fork is a new run whose folder starts with copies of its parent's finished
stage files up to the fork point: the records only (the dataset snapshots and checkpoint weights
they point to are shared, never duplicated), so the loop reads them back as finished work and runs
only the stages the changed settings affect. Its ``run.started`` event names the parent run, the
fork iteration and the branch; the events it re-records for reused stages carry
``inherited_from`` so the registry links the fork to the parent's data and checkpoints as
*reused*, and a forked model's lineage reaches back through its parent's data.

Reading runs is the Lorekeeper's (:mod:`forgemind_core.lorekeeper.runs`,
:mod:`forgemind_core.lorekeeper.tree`); their names stay importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from attrs import evolve
from forgemind_hookspecs import Event, Goal, Registry, UserError

from forgemind_core.base.events import branch_slug, overrides_text
from forgemind_core.base.fsio import link_or_copy, read_json
from forgemind_core.base.protocols import KernelHandle, Reporter
from forgemind_core.base.runfolder import RECORDED_STAGES, STAGES, RunFolder
from forgemind_core.brain.goals import parse_goal
from forgemind_core.brain.goalshape import Catalogue
from forgemind_core.brain.goalyaml import goal_dict, goal_to_yaml
from forgemind_core.brain.loop import Loop
from forgemind_core.brain.summary import run_summary
from forgemind_core.lorekeeper import runs as _runs
from forgemind_core.lorekeeper.runs import flatten, goal_of, last_iteration, pinned_goal, run_parent
from forgemind_core.lorekeeper.tree import diff_summaries
from forgemind_core.lorekeeper.tree import run_tree as _run_tree

__all__ = [
    "ForkKernel",
    "affected_stage",
    "apply_overrides",
    "config_yaml",
    "diff_runs",
    "flatten",
    "fork_run",
    "goal_of",
    "last_iteration",
    "parse_overrides",
    "pinned_goal",
    "runs_tree",
]


class ForkKernel(KernelHandle, Protocol):
    """What forking uses of the ``Forge`` kernel: the home, recording, and its backends' catalogue
    (a ``--set`` is validated like a goal file)."""

    def catalogue(self) -> Catalogue:
        """Every backend of the loaded plugins: ``{pillar: {name: BackendInfo}}``."""
        ...


#: Which stage a changed goal setting invalidates first (longest matching prefix wins).
#: ``base`` means the base model too; ``None`` means nothing reruns (a label only).
_AFFECTS: tuple[tuple[str, str | None], ...] = (
    ("name", None),
    ("task", None),
    ("seed", "plan"),
    ("pack", "plan"),
    ("generate", "plan"),
    ("evaluate.adversarial_per_iteration", "plan"),
    ("evaluate.adversary", "plan"),
    ("filter", "filter"),
    ("review", "filter"),
    ("pretrain", "base"),
    ("limits.base_model", "base"),
    ("train.backend", "base"),
    ("train", "estimate"),
    ("limits.method", "estimate"),
    ("limits.budget_usd", "estimate"),
    ("limits.wall_clock_s", "estimate"),
    ("limits.max_tokens", "estimate"),
    ("evaluate", "evaluate"),
    ("success", "decide"),
    ("limits", "decide"),
    ("planner", "plan"),
    ("executor", "decide"),
    ("export", None),
)


# --------------------------------------------------------------------------------------------
# Overrides: --set key=value
# --------------------------------------------------------------------------------------------


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=3", "generate.0.share=0.5"]`` -> ``{"train.epochs": 3, ...}``; the value
    is read as YAML (``3`` a number, ``true`` a boolean, ``[a, b]`` a list, else text)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected key=value, e.g. train.epochs=3", field="set")
        try:
            value = yaml.load(raw) if raw.strip() else ""
        except YAMLError:
            value = raw
        out[key] = value
    return out


def _set_path(data: Any, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(
                    f"--set {key}: {'.'.join(parts[:i]) or 'the goal'} has {len(node)} entries; "
                    f"{part!r} is not one of 0..{len(node) - 1}",
                    field=key,
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--set {key}: {'.'.join(parts[:i])} is a value, not a section", field=key)


def apply_overrides(goal: Goal, overrides: Mapping[str, Any],
                    catalogue: Catalogue | None = None) -> tuple[Goal, list[str]]:
    """The goal with ``overrides`` (dotted keys of the goal file's flat form) applied and
    validated like a goal file; returns it with the dotted keys whose value changed."""
    before = goal_dict(goal)
    data = json.loads(json.dumps(before, default=str))
    for key, value in overrides.items():
        _set_path(data, key, value)
    # JSON is YAML: the whole goal on one line, so a problem reads "--set:1: train.epochs: ..."
    new = parse_goal(json.dumps(data), source="--set", catalogue=catalogue)
    new = evolve(new, source=goal.source)
    old_flat, new_flat = flatten(before), flatten(goal_dict(new))
    changed = sorted(k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k))
    return new, changed


def affected_stage(changed: Sequence[str]) -> tuple[str | None, bool]:
    """``(first stage of the fork iteration to run again, whether the base model changes)``;
    ``None`` when nothing needs to run again (only labels changed)."""
    first: int | None = None
    base = False
    for key in changed:
        match = max(
            (p for p in _AFFECTS if key == p[0] or key.startswith(p[0] + ".")),
            key=lambda p: len(p[0]),
            default=("", "plan"),
        )
        stage = match[1]
        if stage is None:
            continue
        if stage == "base":
            base, stage = True, "estimate"
        index = STAGES.index(stage)
        first = index if first is None else min(first, index)
    return (STAGES[first] if first is not None else None), base


# --------------------------------------------------------------------------------------------
# forge fork
# --------------------------------------------------------------------------------------------


def _branch_name(overrides: Mapping[str, Any]) -> str:
    return branch_slug(overrides_text(overrides)) if overrides else "fork"


def fork_run(
    forge: ForkKernel,
    run_id: str,
    *,
    iteration: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    branch: str | None = None,
    new_run_id: str | None = None,
    reporter: Reporter | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> Loop:
    """Create a fork of ``run_id`` at ``iteration`` (default: its last) with ``overrides`` and
    return its :class:`Loop`, ready to :meth:`~Loop.run`.

    Iterations before the fork iteration are reused whole; the fork iteration is reused up to the
    first stage a changed setting affects (``train.*`` -> estimate, train, evaluate and decide
    run again; ``filter`` -> from filter on; ``success.*`` -> decide only; ...).

    :raises UserError: no such run, an iteration it does not have, or a bad ``--set``.
    """
    home = Path(forge.home)
    parent_run = RunFolder(home, run_id)
    goal = goal_of(home, run_id)
    last = last_iteration(parent_run)
    if last == 0:
        raise UserError(f"run {run_id!r} has no planned iteration to fork from", field="run")
    n = last if iteration is None else iteration
    if not 1 <= n <= last:
        raise UserError(f"run {run_id!r} has iterations 1 to {last}, not {n}", field="iteration")
    overrides = dict(overrides or {})
    new_goal, changed = apply_overrides(goal, overrides, forge.catalogue())
    stage, base_changed = affected_stage(changed)
    # RECORDED_STAGES, not STAGES: with a Warden policy an iteration also has a review stage
    # (after filter). It is reused with the data, carrying the parent's human decisions; when
    # filter runs again, review does too, and warden.review_stage reuses the decisions a
    # reviewer made on the same examples in the parent (never asks for them twice, never drops them).
    stop = RECORDED_STAGES.index(stage) if stage is not None else len(RECORDED_STAGES)
    reused: dict[str, list[str]] = {}
    for k in range(1, n + 1):
        keep = RECORDED_STAGES if k < n else RECORDED_STAGES[:stop]
        if k == n - 1 and stage == "plan":  # iteration n's plan is written by iteration n-1's decide
            keep = RECORDED_STAGES[:-1]
        names = [s for s in keep if parent_run.has_stage(k, s)]
        if names:
            reused[str(k)] = names
    if not base_changed and parent_run.base_file.is_file():
        reused["0"] = ["base"]
    parent = {
        "run_id": run_id,
        "iteration": n,
        "branch": branch or _branch_name(overrides),
        "parent_branch": run_parent(parent_run).get("branch") or "main",
        "changed": changed,
        "rerun_from": stage,
        "reused": reused,
    }
    loop = Loop.start(forge, new_goal, run_id=new_run_id, reporter=reporter, on_event=on_event, parent=parent)
    child = RunFolder(home, loop.run_id)
    for key, names in reused.items():
        for name in names:
            if key == "0":
                link_or_copy(parent_run.base_file, child.base_file)
            else:
                parent_run.copy_stage(int(key), name, child)
    loop.log.info("run.forked", parent=run_id, iteration=n, changed=changed, rerun_from=stage)
    return loop


# --------------------------------------------------------------------------------------------
# The Lorekeeper's views, with what the Brain adds: the goal file writer, the run summaries
# --------------------------------------------------------------------------------------------


def config_yaml(home: Path, run_id: str, iteration: int | None = None) -> str:
    """A goal file (YAML) that runs again as is and reproduces the run or the iteration
    (:func:`forgemind_core.lorekeeper.runs.config_yaml` with the Brain's goal writer)."""
    return _runs.config_yaml(home, run_id, iteration, goal_to_yaml=goal_to_yaml)


def runs_tree(registry: Registry) -> list[dict[str, Any]]:
    """Every run as a tree node (:func:`forgemind_core.lorekeeper.tree.run_tree`)."""
    return _run_tree(registry)


def _summary(home: Path, run_id: str) -> dict[str, Any]:
    folder = RunFolder(home, run_id)
    state = read_json(folder.state_file) or {}
    return run_summary(folder, goal_of(home, run_id), state, spent_usd=float(state.get("spent_usd", 0.0)))


def diff_runs(forge: KernelHandle, a: str, b: str) -> dict[str, Any]:
    """Config and result differences of two runs, from their folders
    (:func:`forgemind_core.lorekeeper.tree.diff_summaries` of their goals and summaries)."""
    home = Path(forge.home)
    return diff_summaries(a, b, goal_dict(goal_of(home, a)), goal_dict(goal_of(home, b)),
                          _summary(home, a), _summary(home, b))
