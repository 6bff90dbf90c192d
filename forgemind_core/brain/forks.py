"""Load, fork and compare runs: ``forge show --config``, ``forge fork``, ``forge runs --tree``,
``forge diff``.

A run's folder (``<home>/runs/<id>/``: ``goal.json``, ``base.json``, ``iter-<n>/<stage>.json``) is
the source of truth. A fork is a new run whose folder starts with copies of its parent's finished
stage files up to the fork point: the records only (the dataset snapshots and checkpoint weights
they point to are shared, never duplicated), so the loop reads them back as finished work and runs
only the stages the changed settings affect. Its ``run.started`` event names the parent run, the
fork iteration and the branch; the events it re-records for reused stages carry
``inherited_from`` so the registry links the fork to the parent's data and checkpoints as
*reused*, and a forked model's lineage reaches back through its parent's data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import evolve
from forgemind_hookspecs import BackendChoice, Goal, UserError, from_dict

from forgemind_core.brain.loop import RECORDED_STAGES, STAGES, Loop, run_dir

__all__ = [
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

#: Files of an iteration folder that belong to a stage (besides ``<stage>.json``).
_STAGE_FILES: dict[str, tuple[str, ...]] = {"generate": ("examples.jsonl",), "filter": ("verdicts.jsonl",)}


# --------------------------------------------------------------------------------------------
# Reading a run's folder.
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def goal_of(home: Path, run_id: str) -> Goal:
    """The goal a run was started with (its ``goal.json``)."""
    data = _read_json(run_dir(home, run_id) / "goal.json")
    if data is None:
        raise UserError(f"no run {run_id!r} in {home}", field="run")
    return from_dict(Goal, data)


def last_iteration(folder: Path) -> int:
    """The highest iteration of a run folder that got as far as a plan (0 if none)."""
    n = 0
    while (folder / f"iter-{n + 1}" / "plan.json").is_file():
        n += 1
    return n


def _goal_dict(goal: Goal) -> dict[str, Any]:
    from forgemind_core.brain.goals import goal_dict as flat_goal

    return flat_goal(goal)


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


# --------------------------------------------------------------------------------------------
# forge show RUN --config
# --------------------------------------------------------------------------------------------


def pinned_goal(home: Path, run_id: str, iteration: int | None = None) -> Goal:
    """The goal that reproduces a run (``iteration=None``: the goal as started) or one
    iteration: the same goal with the recorded plans of iterations 1..N pinned through the
    ``replay`` planner and ``limits.max_iterations: N``."""
    goal = goal_of(home, run_id)
    if iteration is None:
        return goal
    folder = run_dir(home, run_id)
    last = last_iteration(folder)
    if not 1 <= iteration <= last:
        raise UserError(f"run {run_id!r} has iterations 1 to {last}, not {iteration}", field="iteration")
    plans = [_read_json(folder / f"iter-{n}" / "plan.json")["plan"] for n in range(1, iteration + 1)]
    return evolve(
        goal,
        planner=BackendChoice("replay", {"plans": tuple(plans)}),
        limits=evolve(goal.limits, max_iterations=iteration),
    )


def config_yaml(home: Path, run_id: str, iteration: int | None = None) -> str:
    """A goal file (YAML) that runs again as is and reproduces the run or the iteration."""
    from forgemind_core.brain.goals import goal_to_yaml

    goal = pinned_goal(home, run_id, iteration)
    state = _read_json(run_dir(home, run_id) / "state.json") or {}
    parent = state.get("parent") or {}
    what = f"iteration {iteration} of run {run_id}" if iteration else f"run {run_id}"
    head = [f"# reproduces {what}", f"# branch: {parent.get('branch') or 'main'}"]
    if parent.get("run_id"):
        head.append(f"# forked from {parent['run_id']} at iteration {parent.get('iteration')}")
    if iteration:
        head.append("# the recorded plans are pinned with the replay planner")
    return "\n".join(head) + "\n" + goal_to_yaml(goal)


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


def apply_overrides(goal: Goal, overrides: Mapping[str, Any], catalogue: Any = None) -> tuple[Goal, list[str]]:
    """The goal with ``overrides`` (dotted keys of the goal file's flat form) applied and
    validated like a goal file; returns it with the dotted keys whose value changed."""
    from forgemind_core.brain.goals import parse_goal

    before = _goal_dict(goal)
    data = json.loads(json.dumps(before, default=str))
    for key, value in overrides.items():
        _set_path(data, key, value)
    # JSON is YAML: the whole goal on one line, so a problem reads "--set:1: train.epochs: ..."
    new = parse_goal(json.dumps(data), source="--set", catalogue=catalogue)
    new = evolve(new, source=goal.source)
    old_flat, new_flat = flatten(before), flatten(_goal_dict(new))
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
    if not overrides:
        return "fork"
    parts = [f"{key.split('.')[-1]}={value}" for key, value in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", ",".join(parts))[:60]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)  # a copy, not a hard link: the parent's files stay the parent's alone
    os.replace(tmp, dst)


def fork_run(
    forge: Any,
    run_id: str,
    *,
    iteration: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    branch: str | None = None,
    new_run_id: str | None = None,
    reporter: Any = None,
    on_event: Any = None,
) -> Loop:
    """Create a fork of ``run_id`` at ``iteration`` (default: its last) with ``overrides`` and
    return its :class:`Loop`, ready to :meth:`~Loop.run`.

    Iterations before the fork iteration are reused whole; the fork iteration is reused up to the
    first stage a changed setting affects (``train.*`` -> estimate, train, evaluate and decide
    run again; ``filter`` -> from filter on; ``success.*`` -> decide only; ...).

    :raises UserError: no such run, an iteration it does not have, or a bad ``--set``.
    """
    home = Path(forge.home)
    parent_dir = run_dir(home, run_id)
    goal = goal_of(home, run_id)
    last = last_iteration(parent_dir)
    if last == 0:
        raise UserError(f"run {run_id!r} has no planned iteration to fork from", field="run")
    n = last if iteration is None else iteration
    if not 1 <= n <= last:
        raise UserError(f"run {run_id!r} has iterations 1 to {last}, not {n}", field="iteration")
    overrides = dict(overrides or {})
    new_goal, changed = apply_overrides(goal, overrides, forge.catalogue())
    stage, base_changed = affected_stage(changed)
    parent_state = _read_json(parent_dir / "state.json") or {}
    # RECORDED_STAGES, not STAGES: with a Warden policy an iteration also has a review stage
    # (after filter). It is reused with the data, carrying the parent's human decisions; when
    # filter runs again, review does too, and warden.review_stage reuses the decisions a
    # reviewer made on the same examples in the parent (never asks for them twice, never drops them).
    stop = RECORDED_STAGES.index(stage) if stage is not None else len(RECORDED_STAGES)
    reused: dict[str, list[str]] = {}
    for k in range(1, n + 1):
        folder = parent_dir / f"iter-{k}"
        keep = RECORDED_STAGES if k < n else RECORDED_STAGES[:stop]
        if k == n - 1 and stage == "plan":  # iteration n's plan is written by iteration n-1's decide
            keep = RECORDED_STAGES[:-1]
        names = [s for s in keep if (folder / f"{s}.json").is_file()]
        if names:
            reused[str(k)] = names
    if not base_changed and (parent_dir / "base.json").is_file():
        reused["0"] = ["base"]
    parent = {
        "run_id": run_id,
        "iteration": n,
        "branch": branch or _branch_name(overrides),
        "parent_branch": (parent_state.get("parent") or {}).get("branch") or "main",
        "changed": changed,
        "rerun_from": stage,
        "reused": reused,
    }
    loop = Loop.start(forge, new_goal, run_id=new_run_id, reporter=reporter, on_event=on_event, parent=parent)
    for key, names in reused.items():
        src = parent_dir if key == "0" else parent_dir / f"iter-{key}"
        dst = loop.dir if key == "0" else loop.dir / f"iter-{key}"
        for name in names:
            for file in (f"{name}.json", *_STAGE_FILES.get(name, ())):
                if (src / file).is_file():
                    _link_or_copy(src / file, dst / file)
    loop.log.info("run.forked", parent=run_id, iteration=n, changed=changed, rerun_from=stage)
    return loop


# --------------------------------------------------------------------------------------------
# forge runs --tree
# --------------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def runs_tree(registry: Any) -> list[dict[str, Any]]:
    """Every run as a tree node ``{id, goal_name, branch, parent_run, parent_iteration, status,
    outcome, started, children}``; roots are runs without a (known) parent, oldest first."""
    rows = registry.sql(
        "SELECT id, goal_name, coalesce(branch, 'main') AS branch, parent_run, parent_iteration, "
        "status, outcome, started, stable_checkpoint FROM runs ORDER BY started NULLS LAST, id"
    )
    nodes = {row["id"]: {**row, "children": []} for row in rows}
    roots: list[dict[str, Any]] = []
    for row in rows:
        node = nodes[row["id"]]
        parent = nodes.get(row["parent_run"] or "")
        (parent["children"] if parent is not None else roots).append(node)
    return roots


# --------------------------------------------------------------------------------------------
# forge diff A B
# --------------------------------------------------------------------------------------------


def _summary(forge: Any, run_id: str) -> dict[str, Any]:
    return Loop(forge, goal_of(Path(forge.home), run_id), run_id, None, None).summary()


def diff_runs(forge: Any, a: str, b: str) -> dict[str, Any]:
    """Config and result differences of two runs, from their folders.

    ``config``: one ``{key, a, b}`` per goal setting that differs (dotted keys of the goal
    file). ``results``: outcome, stable checkpoint, cost, iterations of each. ``iterations``: per
    iteration the plan size, dataset, checkpoint and scores of each, and whether the two share
    the dataset and the checkpoint (a fork shares its reused iterations with its parent).
    """
    home = Path(forge.home)
    fa, fb = flatten(_goal_dict(goal_of(home, a))), flatten(_goal_dict(goal_of(home, b)))
    config = [
        {"key": k, "a": fa.get(k), "b": fb.get(k)}
        for k in sorted(fa.keys() | fb.keys())
        if fa.get(k) != fb.get(k) and not k.startswith("planner.plans")
    ]
    sa, sb = _summary(forge, a), _summary(forge, b)
    results = {
        key: {"a": sa.get(key) if key != "stable_checkpoint" else (sa.get(key) or {}).get("id"),
              "b": sb.get(key) if key != "stable_checkpoint" else (sb.get(key) or {}).get("id")}
        for key in ("outcome", "stable_checkpoint", "cost_usd", "wall_s")
    }
    results["iterations"] = {"a": len(sa["iterations"]), "b": len(sb["iterations"])}
    by_a = {it["iteration"]: it for it in sa["iterations"]}
    by_b = {it["iteration"]: it for it in sb["iterations"]}
    iterations = []
    for n in sorted(by_a.keys() | by_b.keys()):
        ia, ib = by_a.get(n), by_b.get(n)

        def side(it: Mapping[str, Any] | None) -> dict[str, Any] | None:
            if it is None:
                return None
            return {"dataset": it["data"]["dataset_id"], "kept": it["data"]["kept"], "checkpoint": it["checkpoint"],
                    "scores": it["scores"], "decision": (it.get("decision") or {}).get("action")}

        left, right = side(ia), side(ib)
        iterations.append({
            "iteration": n,
            "a": left,
            "b": right,
            "same_dataset": bool(left and right and left["dataset"] and left["dataset"] == right["dataset"]),
            "same_checkpoint": bool(left and right and left["checkpoint"] and left["checkpoint"] == right["checkpoint"]),
        })
    return {"a": a, "b": b, "config": config, "results": results, "iterations": iterations}
