"""Runs side by side: the tree of forks and generations (``forge runs --tree``) and the
difference of two runs (``forge diff A B``).

The tree's rows come from the registry (:meth:`~forgemind_hookspecs.backends.Registry.run_tree`)
and each run's ``server.used`` events (a recorded checkpoint served to one of its stages); the
difference is computed from what the caller read of each run — its goal in the flat form of a goal
file and its summary — so this room needs neither the Brain nor SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forgemind_hookspecs import Registry

from forgemind_core.lorekeeper.runs import flatten

__all__ = ["TEACHER_EDGES", "diff_summaries", "run_tree", "teachers"]

#: The edge a served checkpoint has to the run it served, by the pillar of the client that used it
#: (the registry's teacher edges, docs/registry.md "Teachers"); the files generator's labeller is
#: a generator client, its edge is named ``labelled`` here.
TEACHER_EDGES: Mapping[str, str] = {"generators": "generated", "filters": "judged", "adversaries": "attacked",
                                    "runners": "answered"}


def teachers(registry: Registry, run_id: str) -> list[dict[str, Any]]:
    """The recorded checkpoints that served stages of ``run_id``, in the order first used:
    ``{checkpoint, run, goal, version, ref, edges}`` (``edges``: ``labelled``, ``generated``,
    ``judged``, ``attacked``, ``answered``)."""
    found: dict[str, dict[str, Any]] = {}
    for event in registry.events(run_id, kinds=["server.used"]):
        p = event.get("payload") or {}
        cid = p.get("checkpoint_id")
        if not cid:
            continue
        edge = "labelled" if p.get("client") == "files" else TEACHER_EDGES.get(str(p.get("pillar")), "served")
        entry = found.setdefault(str(cid), {"checkpoint": str(cid), "run": p.get("checkpoint_run"), "goal": p.get("goal"),
                                            "version": p.get("version"), "ref": p.get("ref"), "edges": []})
        if edge not in entry["edges"]:
            entry["edges"].append(edge)
    return list(found.values())


def run_tree(registry: Registry) -> list[dict[str, Any]]:
    """Every run as a tree node ``{id, goal_name, branch, parent_run, parent_iteration, status,
    outcome, started, stable_checkpoint, teachers, children, successors}``.

    ``children`` are the runs forked from it; ``successors`` the runs (not forks) one of whose
    stages a checkpoint of this run served (data labelled, generated or judged by it: the next
    generation), each with the ``teachers`` that say which checkpoint and which edges. A run
    whose teacher ran before it is drawn under that teacher; roots are the other runs. Roots,
    children and successors are oldest first.
    """
    rows = registry.run_tree()
    nodes = {row["id"]: {**row, "teachers": teachers(registry, row["id"]), "children": [], "successors": []}
             for row in rows}
    order = {row["id"]: i for i, row in enumerate(rows)}
    roots: list[dict[str, Any]] = []
    for row in rows:
        node = nodes[row["id"]]
        parent = nodes.get(row["parent_run"] or "")
        if parent is not None:  # a fork stays under the run it was forked from
            parent["children"].append(node)
            continue
        teacher = next((nodes[t["run"]] for t in node["teachers"]
                        if t["run"] in nodes and order[t["run"]] < order[row["id"]]), None)
        (teacher["successors"] if teacher is not None else roots).append(node)
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
