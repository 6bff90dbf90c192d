"""The pictures of ``forge compare --html``: checkpoint labels, case counts and score charts.

A checkpoint a run trained is labelled by its iteration (``it 2``; ``p1 it 2`` when the
checkpoints come from several runs; ``base`` for iteration 0) instead of its bare hash, which
stays beside the label. Every percentage gets its number of cases (:func:`case_counts`, from the
comparison's case rows), and the charts are the run report's line charts
(:mod:`forgemind_core.lorekeeper.charts`): each tier's score over the checkpoints, and each
tier's mean score per category.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from forgemind_core.lorekeeper.charts import line_chart

__all__ = ["case_counts", "checkpoint_labels", "comparison_charts"]


def checkpoint_labels(registry: Any, checkpoint_ids: Sequence[str]) -> dict[str, str]:
    """``{checkpoint_id: "it 2"}`` for the checkpoints the registry records as a run's
    (``registry.checkpoint(id)``: ``run_id``, ``iteration``); others keep their id."""
    records = {cid: registry.checkpoint(cid) or {} for cid in checkpoint_ids}
    runs = {r.get("run_id") for r in records.values() if r.get("run_id")}
    labels = {}
    for cid, record in records.items():
        run, iteration = record.get("run_id"), record.get("iteration")
        if not run or not isinstance(iteration, int):
            labels[cid] = cid
            continue
        label = "base" if iteration == 0 else f"it {iteration}"
        labels[cid] = label if len(runs) == 1 else f"{run} {label}"
    if len(set(labels.values())) < len(labels):  # the same iteration twice (e.g. a resumed copy): ids stay
        return {cid: f"{label} ({cid[:8]})" if label != cid else cid for cid, label in labels.items()}
    return labels


def case_counts(comparison: Mapping[str, Any]) -> Counter[tuple[str, str | None, str]]:
    """Cases per ``(tier, None, checkpoint)`` and per ``(tier, category, checkpoint)`` (category
    ``(none)`` for uncategorised cases, as the comparison's ``per_category`` names them)."""
    counts: Counter[tuple[str, str | None, str]] = Counter()
    for row in comparison["cases"]:
        for cid, out in row["outputs"].items():
            if out is not None:
                counts[(row["tier"], None, cid)] += 1
                counts[(row["tier"], row["category"] or "(none)", cid)] += 1
    return counts


def comparison_charts(comparison: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """Each tier's accuracy over the checkpoints (one chart, a line per tier), then per tier the
    mean score per category — every point with its number of cases."""
    ids: list[str] = comparison["checkpoints"]
    x = [labels.get(cid, cid) for cid in ids]
    counts = case_counts(comparison)
    tiers: Mapping[str, Any] = comparison["tiers"]
    charts = [line_chart(
        title="accuracy per tier (cases)", chart_id="tiers", x_labels=x, y_range=(0.0, 1.0),
        series=[{"name": tier, "values": [row["accuracy"].get(cid) for cid in ids],
                 "counts": [counts.get((tier, None, cid)) for cid in ids]} for tier, row in tiers.items()],
    )]
    for tier, row in tiers.items():
        if row["per_category"]:
            charts.append(line_chart(
                title=f"{tier}: mean score per category (cases)", chart_id=f"categories-{tier}",
                x_labels=x, y_range=(0.0, 1.0),
                series=[{"name": cat, "values": [values.get(cid) for cid in ids],
                         "counts": [counts.get((tier, cat, cid)) for cid in ids]}
                        for cat, values in row["per_category"].items()],
            ))
    return charts
