"""Runs side by side: the tree of forks (``forge runs --tree``) and the difference of two runs
(``forge diff A B``).

The tree's rows come from the registry (:meth:`~forgemind_hookspecs.backends.Registry.run_tree`);
the difference is computed from what the caller read of each run — its goal in the flat form of
a goal file and its summary — so this room needs neither the Brain nor SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forgemind_hookspecs import Registry

from forgemind_core.lorekeeper.runs import flatten

__all__ = ["diff_summaries", "run_tree"]


def run_tree(registry: Registry) -> list[dict[str, Any]]:
    """Every run as a tree node ``{id, goal_name, branch, parent_run, parent_iteration, status,
    outcome, started, stable_checkpoint, children}``; roots are runs without a (known) parent,
    oldest first, and so are the children of each."""
    rows = registry.run_tree()
    nodes = {row["id"]: {**row, "children": []} for row in rows}
    roots: list[dict[str, Any]] = []
    for row in rows:
        node = nodes[row["id"]]
        parent = nodes.get(row["parent_run"] or "")
        (parent["children"] if parent is not None else roots).append(node)
    return roots


def _side(it: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if it is None:
        return None
    return {"dataset": it["data"]["dataset_id"], "kept": it["data"]["kept"], "checkpoint": it["checkpoint"],
            "scores": it["scores"], "decision": (it.get("decision") or {}).get("action")}


def _stable_id(summary: Mapping[str, Any]) -> Any:
    return (summary.get("stable_checkpoint") or {}).get("id")


def diff_summaries(a: str, b: str, goal_a: Mapping[str, Any], goal_b: Mapping[str, Any],
                   summary_a: Mapping[str, Any], summary_b: Mapping[str, Any]) -> dict[str, Any]:
    """Config and result differences of runs ``a`` and ``b``, given each one's goal (the flat
    form of a goal file, as a dict) and its summary (what ``forge run --json`` prints).

    ``config``: one ``{key, a, b}`` per goal setting that differs (dotted keys of the goal
    file; the pinned plans of a replay planner left out). ``results``: outcome, stable
    checkpoint, cost, wall time and iterations of each. ``iterations``: per iteration the plan
    size, dataset, checkpoint and scores of each, and whether the two share the dataset and the
    checkpoint (a fork shares its reused iterations with its parent).
    """
    fa, fb = flatten(goal_a), flatten(goal_b)
    config = [
        {"key": k, "a": fa.get(k), "b": fb.get(k)}
        for k in sorted(fa.keys() | fb.keys())
        if fa.get(k) != fb.get(k) and not k.startswith("planner.plans")
    ]
    sa, sb = summary_a, summary_b
    results: dict[str, Any] = {
        key: {"a": sa.get(key) if key != "stable_checkpoint" else _stable_id(sa),
              "b": sb.get(key) if key != "stable_checkpoint" else _stable_id(sb)}
        for key in ("outcome", "stable_checkpoint", "cost_usd", "wall_s")
    }
    results["iterations"] = {"a": len(sa["iterations"]), "b": len(sb["iterations"])}
    by_a = {it["iteration"]: it for it in sa["iterations"]}
    by_b = {it["iteration"]: it for it in sb["iterations"]}
    iterations = []
    for n in sorted(by_a.keys() | by_b.keys()):
        left, right = _side(by_a.get(n)), _side(by_b.get(n))
        iterations.append({
            "iteration": n,
            "a": left,
            "b": right,
            "same_dataset": bool(left and right and left["dataset"] and left["dataset"] == right["dataset"]),
            "same_checkpoint": bool(left and right and left["checkpoint"] and left["checkpoint"] == right["checkpoint"]),
        })
    return {"a": a, "b": b, "config": config, "results": results, "iterations": iterations}
