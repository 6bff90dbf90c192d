"""What a person reads about recorded runs: the rows of ``forge runs`` and the tree of ``forge
lineage`` — plain data (labels, nested nodes) that the CLI draws with rich.

The lineage tree is built from what :meth:`~forgemind_hookspecs.backends.Registry.lineage`
returns (the same dict ``forge lineage --json`` prints), the checkpoints' evaluation reports
(:meth:`~forgemind_hookspecs.backends.Registry.eval_reports`) and the filter counts each run
folder keeps (``iter-N/filter.json`` or ``review.json``: kept, dropped by reason). Ancestors are
drawn as ``<- relation`` branches under the node they lead to (checkpoint <- dataset [sources,
verdicts] <- parent dataset, <- base checkpoint, <- a teacher checkpoint that generated or judged
the data), descendants as ``-> relation`` branches (promotions, checkpoints trained on a dataset,
forks), and a checkpoint's evaluations per tier.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import Registry

from forgemind_core.base.fsio import read_json
from forgemind_core.base.runfolder import RunFolder

__all__ = ["RUN_COLUMNS", "TreeNode", "lineage_tree", "local_time", "run_rows"]

#: The columns of ``forge runs`` (keys of :func:`run_rows`' rows).
RUN_COLUMNS: tuple[str, ...] = ("run_id", "goal", "status", "outcome", "iters", "started")

#: A node of a drawn tree: ``{"label": str, "children": [TreeNode, ...]}``.
TreeNode = dict[str, Any]

#: Edges from a run to what it made: the run is named on the node's own line instead.
_RUN_EDGES = frozenset({"produced", "reused"})


def local_time(epoch: float | None, *, seconds: bool = True) -> str:
    """``2026-12-04 22:01:05`` (or without the seconds) in the local time zone; ``-`` when there
    is no time."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""), time.localtime(float(epoch)))


def run_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The registry's run rows (:meth:`Registry.runs`) as the cells of ``forge runs``: id, goal
    name (with its branch when it is not ``main``), status, outcome, iterations and the start as
    a local time to the minute."""
    out = []
    for row in rows:
        branch = row.get("branch")
        goal = str(row.get("goal_name") or "-") + (f" ({branch})" if branch and branch != "main" else "")
        out.append({
            "run_id": str(row.get("id") or "-"),
            "goal": goal,
            "status": str(row.get("status") or "-"),
            "outcome": str(row.get("outcome") or "-"),
            "iters": str(row.get("iterations") if row.get("iterations") is not None else "-"),
            "started": local_time(row.get("started"), seconds=False),
        })
    return out


def _node(label: str, children: list[TreeNode] | None = None) -> TreeNode:
    return {"label": label, "children": children or []}


def _pct(value: Any) -> str:
    return f"{float(value):.0%}" if isinstance(value, (int, float)) else "-"


def _verdicts(home: Path, run_id: Any, iteration: Any) -> TreeNode | None:
    """``verdicts (iteration 2): kept 24, dropped 3 (rules: too long x3)`` from the run folder."""
    if not run_id or not isinstance(iteration, int) or iteration < 1:
        return None
    folder = RunFolder(home, str(run_id))
    data = read_json(folder.stage_file(iteration, "review")) or read_json(folder.stage_file(iteration, "filter"))
    if not data:
        return None
    by_reason = dict(data.get("dropped_by_reason") or {})
    dropped = int(data.get("dropped", sum(int(v) for v in by_reason.values())))
    why = ", ".join(f"{reason} x{n}" for reason, n in sorted(by_reason.items(), key=lambda kv: (-int(kv[1]), kv[0])))
    return _node(f"verdicts of iteration {iteration}: kept {data.get('kept', 0)}, dropped {dropped}"
                 + (f" ({why})" if why else ""))


def _dataset_label(record: Mapping[str, Any] | None, node_id: str) -> str:
    if record is None:
        return f"dataset {node_id}"
    stats = record.get("stats") or {}
    new = stats.get("new_examples")
    extra = f", {new} new" if new is not None and new != record.get("n_examples") else ""
    return (f"dataset {node_id}: {record.get('n_examples')} examples{extra} "
            f"(run {record.get('run_id')}, iteration {record.get('iteration')})")


def _dataset_children(record: Mapping[str, Any] | None, home: Path) -> list[TreeNode]:
    if record is None:
        return []
    sources = [
        _node(f"{s.get('generator') or '?'}"
              + (f" {s['model']}" if s.get("model") else "")
              + (f" / {s['prompt_template']}" if s.get("prompt_template") else "")
              + f" x {s.get('examples')}")
        for s in record.get("sources") or []
    ]
    children = [_node(f"sources ({len(sources)})", sources)] if sources else []
    verdicts = _verdicts(home, record.get("run_id"), record.get("iteration"))
    if verdicts is not None:
        children.append(verdicts)
    return children


def _checkpoint_label(record: Mapping[str, Any] | None, node_id: str) -> str:
    if record is None:
        return f"checkpoint {node_id}"
    where = f"run {record.get('run_id')}, iteration {record.get('iteration')}" if record.get("run_id") else "outside a run"
    return f"checkpoint {node_id}: {record.get('stage') or '-'}, {record.get('method') or '-'} ({where})"


def _checkpoint_children(record: Mapping[str, Any] | None) -> list[TreeNode]:
    return [_node(f"path: {record['path']}")] if record and record.get("path") else []


def _evaluations(registry: Registry, checkpoint_id: str) -> TreeNode | None:
    reports = registry.eval_reports(checkpoint_id)
    if not reports:
        return None
    lines = []
    for report in reports:
        metrics = report.get("metrics") or {}
        n = metrics.get("n", len(report.get("results") or ()))
        lines.append(_node(f"{report.get('tier')}: accuracy {_pct(metrics.get('accuracy'))} of {n} cases, "
                           f"pass rate {_pct(metrics.get('pass_rate'))}"))
    return _node("-> evaluated", lines)


def lineage_tree(registry: Registry, home: str | Path, data: Mapping[str, Any]) -> TreeNode:
    """The tree of ``forge lineage``: the node, its ancestors as ``<-`` branches (each under the
    node it leads to), its evaluations (a checkpoint) and its descendants as ``->`` branches."""
    home = Path(home)
    root_id, root_kind = str(data["id"]), str(data.get("kind") or "")
    datasets = {d["id"]: d for d in data.get("datasets") or []}
    checkpoints = {c["id"]: c for c in data.get("checkpoints") or []}
    promotions = {f"{p['channel']}:v{p['version']}": p for p in data.get("promotions") or []}

    def label(node_id: str, kind: str) -> str:
        if kind == "dataset":
            return _dataset_label(datasets.get(node_id), node_id)
        if kind == "checkpoint":
            return _checkpoint_label(checkpoints.get(node_id), node_id)
        if kind == "promotion" and node_id in promotions:
            p = promotions[node_id]
            return f"{node_id} (run {p.get('run_id')}, {local_time(p.get('time'))})"
        return f"{kind} {node_id}"

    def own_run(node_id: str, kind: str) -> Any:
        record = datasets.get(node_id) if kind == "dataset" else checkpoints.get(node_id) if kind == "checkpoint" else None
        return (record or {}).get("run_id")

    back: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for edge in data.get("ancestors") or []:
        back[str(edge.get("child"))].append(edge)
    forward: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for edge in data.get("descendants") or []:
        forward[str(edge.get("parent"))].append(edge)

    def ancestors(node_id: str, kind: str, seen: set[str]) -> list[TreeNode]:
        out: list[TreeNode] = []
        for edge in back.get(node_id, []):
            aid, akind, relation = str(edge["id"]), str(edge["kind"]), str(edge["relation"])
            if relation in _RUN_EDGES and akind == "run" and own_run(node_id, kind) == aid:
                continue  # "(run p1, iteration 2)" on the node's own line says it
            text = f"<- {relation}: {label(aid, akind)}"
            if aid in seen:
                out.append(_node(text + " (drawn above)"))
                continue
            seen.add(aid)
            out.append(_node(text, details(aid, akind) + ancestors(aid, akind, seen)))
        return out

    def details(node_id: str, kind: str) -> list[TreeNode]:
        if kind == "dataset":
            return _dataset_children(datasets.get(node_id), home)
        return _checkpoint_children(checkpoints.get(node_id)) if kind == "checkpoint" else []

    def descendants(node_id: str, seen: set[str]) -> list[TreeNode]:
        out: list[TreeNode] = []
        for edge in forward.get(node_id, []):
            did, dkind = str(edge["id"]), str(edge["kind"])
            if did in seen:
                continue
            seen.add(did)
            out.append(_node(f"-> {edge['relation']}: {label(did, dkind)}", descendants(did, seen)))
        return out

    children = details(root_id, root_kind)
    children += ancestors(root_id, root_kind, {root_id})
    if root_kind == "checkpoint":
        evaluated = _evaluations(registry, root_id)
        if evaluated is not None:
            children.append(evaluated)
    children += descendants(root_id, {root_id})
    return _node(label(root_id, root_kind), children)
