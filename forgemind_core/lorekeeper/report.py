"""The HTML report of one run (``forge report RUN --html OUT``): one self-contained page.

Built from what the run recorded — its summary (the one ``forge show`` prints, with the loss
curves), each iteration's ``evaluate.json`` in the run folder (per tier: the score, the number of
cases, per category the mean score and its cases), the goal the run was started with, the
registry's rejections (dropped examples by iteration, filter and rule) and the lineage tree of the
promoted (or best) checkpoint (:func:`~forgemind_core.lorekeeper.readouts.lineage_tree`).
Charts are inline SVG (:mod:`forgemind_core.lorekeeper.charts`); there is no script, and every
string is escaped.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_core.base.runfolder import RunFolder
from forgemind_core.lorekeeper.charts import Series, line_chart, loss_format, percent
from forgemind_core.lorekeeper.readouts import TreeNode

__all__ = ["REPORT_CSS", "iteration_scores", "render_run_report", "tree_html"]

REPORT_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}
th{background:#f3f3f3}
figure.chart{display:inline-block;margin:.5em 1em .5em 0}
figcaption{font-weight:bold;margin-bottom:.3em}
ul.tree{font-family:ui-monospace,monospace;font-size:.9em}
.reasons{margin:.2em 0;padding-left:1.2em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def iteration_scores(home: str | Path, run_id: str, iterations: Sequence[int], metric: str) -> dict[int, dict[str, Any]]:
    """``{iteration: {tier: {"score", "n", "per_category", "per_category_n"}}}`` from each
    iteration's ``evaluate.json`` (``score`` is ``metric``; an iteration not evaluated is absent)."""
    folder = RunFolder(Path(home), run_id)
    out: dict[int, dict[str, Any]] = {}
    for n in iterations:
        reports = folder.eval_reports(n)
        if reports is None:
            continue
        out[n] = {}
        for tier, report in reports.items():
            metrics = report.get("metrics") or {}
            out[n][tier] = {
                "score": float(metrics.get(metric, 0.0)),
                "n": int(metrics.get("n", len(report.get("results") or ()))),
                "per_category": dict(metrics.get("per_category") or {}),
                "per_category_n": dict(metrics.get("per_category_n") or {}),
            }
    return out


def tree_html(node: TreeNode) -> str:
    """A lineage tree (:func:`~forgemind_core.lorekeeper.readouts.lineage_tree`) as nested lists."""
    children = "".join(tree_html(c) for c in node["children"])
    return f"<li>{_e(node['label'])}" + (f"<ul>{children}</ul>" if children else "") + "</li>"


def _plan_html(plan: Mapping[str, Any]) -> str:
    parts = []
    for g in plan.get("generation") or []:
        weights = g.get("category_weights") or {}
        text = f"{g.get('count')} × {g.get('generator')}" + (f" ({g['strategy']})" if g.get("strategy") else "")
        if weights:
            text += ", weights " + ", ".join(f"{c} {w:g}" for c, w in sorted(weights.items()))
        parts.append(_e(text))
    train = plan.get("train") or {}
    if train:
        parts.append("train: " + _e(", ".join(f"{k}={v}" for k, v in sorted(train.items()))))
    reasons = "".join(f"<li>{_e(r)}</li>" for r in plan.get("reasons") or [])
    return "<br>".join(parts) + (f'<ul class="reasons">{reasons}</ul>' if reasons else "")


def _tiers(scores: Mapping[int, Mapping[str, Any]]) -> list[str]:
    from forgemind_hookspecs import TIERS

    seen = {t for tiers in scores.values() for t in tiers}
    return [t for t in TIERS if t in seen] + sorted(seen - set(TIERS))


def _charts(summary: Mapping[str, Any], scores: Mapping[int, Mapping[str, Any]], metric: str) -> list[str]:
    items = summary["iterations"]
    labels = [f"it {item['iteration']}" for item in items]
    curves = [(item["iteration"], list(item.get("loss_curve") or [])) for item in items]
    longest = max((len(c) for _, c in curves), default=0)
    out = [line_chart(
        title="training loss per logged step", chart_id="loss", x_title="step", y_format=loss_format,
        x_labels=[str(s) for s in range(1, longest + 1)],
        series=[{"name": f"it {n}", "values": c} for n, c in curves if c],
    )]
    tiers = _tiers(scores)
    series: list[Series] = []
    for tier in tiers:
        cells = [scores.get(item["iteration"], {}).get(tier) for item in items]
        series.append({"name": tier, "values": [c["score"] if c else None for c in cells],
                       "counts": [c["n"] if c else None for c in cells]})
    out.append(line_chart(title=f"{metric} per tier per iteration (cases)", chart_id="tiers",
                          x_labels=labels, series=series, y_range=(0.0, 1.0)))
    for tier in tiers:
        cells = [scores.get(item["iteration"], {}).get(tier) for item in items]
        categories = sorted({c for cell in cells if cell for c in cell["per_category"]})
        if not categories:
            continue
        out.append(line_chart(
            title=f"{tier}: mean score per category per iteration (cases)", chart_id=f"categories-{tier}",
            x_labels=labels, y_range=(0.0, 1.0),
            series=[{"name": cat,
                     "values": [cell["per_category"].get(cat) if cell else None for cell in cells],
                     "counts": [cell["per_category_n"].get(cat) if cell else None for cell in cells]}
                    for cat in categories],
        ))
    return out


def _data_table(summary: Mapping[str, Any], rejections: Sequence[Mapping[str, Any]]) -> str:
    by_rule = Counter((int(r.get("iteration") or 0), str(r.get("filter") or "-"), str(r.get("rule") or "-"))
                      for r in rejections)
    rows = ['<table id="data"><tr><th>it</th><th>generated</th><th>kept</th><th>dropped</th>'
            "<th>dropped by reason</th><th>dropped by filter / rule</th><th>dataset</th></tr>"]
    for item in summary["iterations"]:
        n, data = item["iteration"], item["data"]
        reasons = ", ".join(f"{k} × {v}" for k, v in sorted((data.get("dropped_by_reason") or {}).items())) or "-"
        rules = ", ".join(f"{f} / {r} × {c}" for (i, f, r), c in sorted(by_rule.items()) if i == n) or "-"
        rows.append(f'<tr data-iteration="{n}"><td>{n}</td><td class="generated">{data["generated"]}</td>'
                    f'<td class="kept">{data["kept"]}</td><td class="dropped">{data["dropped"]}</td>'
                    f'<td class="by-reason">{_e(reasons)}</td><td class="by-rule">{_e(rules)}</td><td><code>{_e(data.get("dataset_id") or "-")}</code></td></tr>')
    return "".join(rows) + "</table>"


def _iterations_table(summary: Mapping[str, Any], scores: Mapping[int, Mapping[str, Any]]) -> str:
    tiers = _tiers(scores)
    rows = ['<table id="iterations"><tr><th>it</th><th>plan and the planner\'s reasons</th>'
            + "".join(f"<th>{_e(t)}</th>" for t in tiers)
            + "<th>loss</th><th>time</th><th>cost</th><th>decision</th></tr>"]
    for item in summary["iterations"]:
        n = item["iteration"]
        cells = []
        for tier in tiers:
            cell = scores.get(n, {}).get(tier)
            cells.append(f'<td class="score" data-tier="{_e(tier)}">{_e(percent(cell["score"]))} of {cell["n"]}</td>'
                         if cell else "<td>-</td>")
        curve = item.get("loss_curve") or []
        decision = item.get("decision") or {}
        why = "".join(f"<li>{_e(r)}</li>" for r in decision.get("reasons") or [])
        rows.append(
            f'<tr data-iteration="{n}"><td>{n}</td><td>{_plan_html(item.get("plan") or {})}</td>{"".join(cells)}'
            f"<td>{_e(loss_format(curve[-1])) if curve else '-'}</td><td>{float(item.get('seconds') or 0):.1f} s</td>"
            f"<td>${float(item.get('cost_usd') or 0):.4f}</td>"
            f"<td><strong>{_e(decision.get('action', '-'))}</strong>"
            + (f'<ul class="reasons">{why}</ul>' if why else "") + "</td></tr>")
    return "".join(rows) + "</table>"


def render_run_report(
    summary: Mapping[str, Any],
    *,
    home: str | Path,
    goal: Mapping[str, Any] | None = None,
    lineage: TreeNode | None = None,
    rejections: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The page: goal, outcome, per-iteration plan/reasons/scores/decision, charts (loss per
    step, score per tier, mean score per category of each tier), data counts and drops, the
    promoted (or best) checkpoint and its lineage.

    :param summary: :meth:`Forge.summary` of the run (with ``loss_curve`` per iteration).
    :param goal: the run's goal as a dict (``to_dict(Goal)``); its task and success criterion.
    """
    goal = goal or {}
    success = goal.get("success") or {}
    metric = str(success.get("metric") or "accuracy")
    run_id = str(summary["run_id"])
    scores = iteration_scores(home, run_id, [int(i["iteration"]) for i in summary["iterations"]], metric)
    title = f"ForgeMind run {run_id}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        '<section id="goal"><h2>Goal</h2>'
        f"<p><strong>{_e(summary.get('goal') or goal.get('name') or '-')}</strong>: {_e(goal.get('task') or '')}</p>",
    ]
    if success:
        parts.append(f"<p>success: {_e(metric)} ≥ {_e(percent(float(success.get('threshold', 0))))} on "
                     f"{_e(success.get('tier', '-'))}, canary ≥ {_e(percent(float(success.get('canary_min', 0))))}</p>")
    parts.append(f'<p id="outcome">status {_e(summary.get("status") or "-")}, outcome '
                 f"<strong>{_e(summary.get('outcome') or '-')}</strong>: {_e('; '.join(summary.get('reasons') or []))}"
                 f" — {len(summary['iterations'])} iterations, ${float(summary.get('cost_usd') or 0):.4f}, "
                 f"{float(summary.get('wall_s') or 0):.0f} s</p></section>")
    parts.append("<section id='plans'><h2>Iterations</h2>" + _iterations_table(summary, scores) + "</section>")
    parts.append("<section id='charts'><h2>Charts</h2>" + "".join(_charts(summary, scores, metric)) + "</section>")
    parts.append("<section id='data-counts'><h2>Data</h2>" + _data_table(summary, rejections) + "</section>")
    stable, best = summary.get("stable_checkpoint"), summary.get("best_checkpoint")
    parts.append("<section id='model'><h2>Model</h2>")
    if stable:
        parts.append(f'<p id="promoted">promoted to stable: checkpoint <code>{_e(stable["id"])}</code> at '
                     f"<code>{_e(stable.get('path') or '-')}</code></p>")
    elif best:
        parts.append(f'<p id="best">not promoted; best try: iteration {_e(best.get("iteration"))}, checkpoint '
                     f"<code>{_e(best.get('id'))}</code> at <code>{_e(best.get('path') or '-')}</code></p>")
    else:
        parts.append("<p>no checkpoint yet</p>")
    if lineage is not None:
        parts.append(f'<h3>Lineage</h3><ul class="tree" id="lineage">{tree_html(lineage)}</ul>')
    parts.append("</section></body></html>")
    return "\n".join(parts)
