"""Comparing checkpoints: per-case outputs side by side, score deltas, regressions first.

:func:`compare_reports` takes each checkpoint's reports (recorded by a run, or made fresh with
``forge compare --suite``) and returns one JSON-compatible comparison. The first checkpoint is the
*baseline*: every other one is compared with it. A **regression** is a case the baseline passed
and a later checkpoint fails — the thing a person must see first, so regressions lead both the
case list and every rendering (terminal, JSON, HTML).

:func:`render_html` writes a self-contained page (inline CSS, no JavaScript, every value escaped)
that can be opened from disk or attached to a review.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Mapping, Sequence
from typing import Any

from forgemind_hookspecs import TIERS, EvalReport, UserError, from_dict, to_dict

from forgemind_core.trials.analysis import analysis_rows, report_analysis
from forgemind_core.trials.compare_charts import case_counts, comparison_charts

__all__ = [
    "STATUS_ORDER",
    "compare_reports",
    "load_recorded_reports",
    "render_html",
    "render_rich",
    "word_diff",
]

#: How cases are ordered: regressions first, then cases that fail everywhere, then the rest.
STATUS_ORDER: tuple[str, ...] = ("regression", "missing", "still_failing", "improvement", "changed", "same")


def load_recorded_reports(registry: Any, checkpoint_id: str) -> dict[str, EvalReport]:
    """The latest recorded report per tier of a checkpoint (``registry.eval_reports``).

    :raises UserError: nothing was recorded for it (the message says how to evaluate it fresh).
    """
    rows = registry.eval_reports(checkpoint_id)
    reports: dict[str, EvalReport] = {}
    for row in rows:  # later rows win: the latest evaluation of a tier
        report = from_dict(EvalReport, row)
        reports[report.tier] = report
    if not reports:
        raise UserError(
            f"no evaluation is recorded for checkpoint {checkpoint_id!r}; pass --suite FILE to evaluate it now",
            field="checkpoint",
        )
    return reports


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """``[(op, text), ...]`` turning ``old`` into ``new`` word by word; op is ``=``, ``-`` or ``+``.

    Word level (whitespace kept) reads better than character level for model answers, where a
    changed label or one extra clause is the whole story.
    """
    import re

    a = re.findall(r"\s+|\S+", old)
    b = re.findall(r"\s+|\S+", new)
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(b[j1:j2])))
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def compare_reports(reports: Mapping[str, Mapping[str, EvalReport]]) -> dict[str, Any]:
    """Compare checkpoints' reports; the first key of ``reports`` is the baseline.

    :param reports: ``{checkpoint_id: {tier: EvalReport}}`` in the order to show.
    :returns: ``checkpoints``, ``baseline``, ``tiers`` ({tier: ``accuracy`` and ``delta`` per
        checkpoint, ``per_category`` {category: {checkpoint: accuracy}}, ``category_delta``,
        ``analysis`` {checkpoint: the failure analysis, recorded or computed from the results}),
        ``regressions`` and ``improvements`` (``{checkpoint, tier, case_id}`` lists against the
        baseline), ``counts`` and ``cases`` (one row per case and tier, regressions first, with
        every checkpoint's output, score, pass flag and word diff against the baseline).
    :raises UserError: fewer than two checkpoints.
    """
    ids = list(reports)
    if len(ids) < 2:
        raise UserError("compare needs at least two checkpoints", field="checkpoints")
    baseline = ids[0]
    tiers = sorted(
        {t for r in reports.values() for t in r},
        key=lambda t: (TIERS.index(t) if t in TIERS else len(TIERS), t),
    )
    tier_rows: dict[str, Any] = {}
    case_rows: list[dict[str, Any]] = []
    regressions: list[dict[str, Any]] = []
    improvements: list[dict[str, Any]] = []
    for tier in tiers:
        accuracy: dict[str, float | None] = {}
        per_category: dict[str, dict[str, float]] = {}
        by_case: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        analyses: dict[str, Any] = {}
        for cid in ids:
            report = reports[cid].get(tier)
            if report is None:
                accuracy[cid] = None
                continue
            analysis = report_analysis(report)
            if analysis is not None:
                analyses[cid] = to_dict(analysis)
            results = report.results
            accuracy[cid] = float(report.metrics.get("accuracy", _mean([r.score for r in results])))
            cats: dict[str, list[float]] = {}
            for result in results:
                cats.setdefault(result.category or "(none)", []).append(result.score)
                if result.case_id not in by_case:
                    by_case[result.case_id] = {}
                    order.append(result.case_id)
                by_case[result.case_id][cid] = result
            for cat, scores in cats.items():
                per_category.setdefault(cat, {})[cid] = _mean(scores)
        base_acc = accuracy.get(baseline)
        tier_rows[tier] = {
            "accuracy": accuracy,
            "delta": {
                cid: (None if acc is None or base_acc is None else acc - base_acc)
                for cid, acc in accuracy.items()
                if cid != baseline
            },
            "per_category": dict(sorted(per_category.items())),
            "category_delta": {
                cat: {
                    cid: values[cid] - values[baseline]
                    for cid in ids[1:]
                    if cid in values and baseline in values
                }
                for cat, values in sorted(per_category.items())
            },
            "analysis": analyses,
        }
        for case_id in order:
            row = _case_row(tier, case_id, by_case[case_id], ids, baseline)
            case_rows.append(row)
            for cid in row["regressed_in"]:
                regressions.append({"checkpoint": cid, "tier": tier, "case_id": case_id})
            for cid in row["improved_in"]:
                improvements.append({"checkpoint": cid, "tier": tier, "case_id": case_id})
    case_rows.sort(key=lambda r: STATUS_ORDER.index(r["status"]))  # stable: suite order within a status
    counts = {status: sum(r["status"] == status for r in case_rows) for status in STATUS_ORDER}
    return {
        "checkpoints": ids,
        "baseline": baseline,
        "tiers": tier_rows,
        "regressions": regressions,
        "improvements": improvements,
        "counts": counts,
        "cases": case_rows,
    }


def _case_row(
    tier: str, case_id: str, results: Mapping[str, Any], ids: Sequence[str], baseline: str
) -> dict[str, Any]:
    first = next(iter(results.values()))
    base = results.get(baseline)
    outputs: dict[str, Any] = {}
    regressed, improved = [], []
    for cid in ids:
        result = results.get(cid)
        if result is None:
            outputs[cid] = None
            continue
        entry: dict[str, Any] = {
            "output": result.output,
            "score": result.score,
            "passed": result.passed,
            "reason": str(result.details.get("reason", "")),
        }
        if base is not None and cid != baseline:
            entry["diff"] = [list(op) for op in word_diff(base.output, result.output)]
            if base.passed and not result.passed:
                regressed.append(cid)
            elif result.passed and not base.passed:
                improved.append(cid)
        outputs[cid] = entry
    present = [o for o in outputs.values() if o is not None]
    if regressed:
        status = "regression"
    elif any(o is None for o in outputs.values()):
        status = "missing"
    elif not any(o["passed"] for o in present):
        status = "still_failing"
    elif improved:
        status = "improvement"
    elif len({o["output"] for o in present}) > 1:
        status = "changed"
    else:
        status = "same"
    return {
        "tier": tier,
        "case_id": case_id,
        "category": first.category,
        "input": first.input,
        "expected": first.expected,
        "status": status,
        "regressed_in": regressed,
        "improved_in": improved,
        "outputs": outputs,
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _delta(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f} pts"


def render_rich(comparison: Mapping[str, Any], console: Any, *, max_cases: int = 50) -> None:
    """Print the comparison as rich tables: tier scores, category deltas, then the cases
    (regressions first, outputs with removed words red and added words green)."""
    from rich.markup import escape
    from rich.table import Table

    ids: list[str] = comparison["checkpoints"]
    scores = Table(title="Scores by tier (baseline: first checkpoint)")
    scores.add_column("tier")
    for cid in ids:
        scores.add_column(cid, justify="right")
    for tier, row in comparison["tiers"].items():
        cells = [_pct(row["accuracy"].get(ids[0]))]
        cells += [f"{_pct(row['accuracy'].get(c))} ({_delta(row['delta'].get(c))})" for c in ids[1:]]
        scores.add_row(tier, *cells)
        for cat, values in row["per_category"].items():
            deltas = row["category_delta"].get(cat, {})
            cells = [_pct(values.get(ids[0]))] + [
                f"{_pct(values.get(c))} ({_delta(deltas.get(c))})" for c in ids[1:]
            ]
            scores.add_row(f"  {escape(cat)}", *cells, style="dim")
    console.print(scores)
    failures = Table(title="What is wrong inside the failures (failure analysis)")
    for column in ("tier", "checkpoint", "what", "finding"):
        failures.add_column(column)
    for tier, row in comparison["tiers"].items():
        for cid in ids:
            for what, finding in analysis_rows(row.get("analysis", {}).get(cid)):
                failures.add_row(tier, cid, what, escape(finding))
    if failures.row_count:
        console.print(failures)
    counts = comparison["counts"]
    console.print(
        f"[bold red]{len(comparison['regressions'])} regressions[/], "
        f"[green]{len(comparison['improvements'])} improvements[/], "
        f"{counts['still_failing']} failing everywhere, {counts['same']} unchanged"
    )
    plain = bool(console.no_color or console.color_system is None)
    cases = Table(title="Cases (regressions first)", show_lines=True)
    cases.add_column("status")
    cases.add_column("case / tier / category")
    cases.add_column("input")
    cases.add_column("expected")
    for cid in ids:
        cases.add_column(cid)
    for row in comparison["cases"][:max_cases]:
        style = {"regression": "bold red", "improvement": "green", "still_failing": "yellow"}.get(
            row["status"], ""
        )
        cells = [
            f"[{style}]{row['status']}[/]" if style else row["status"],
            escape(f"{row['case_id']}\n{row['tier']} / {row['category'] or '-'}"),
            escape(_short(row["input"], 80)),
            escape(row["expected"]),
        ]
        for cid in ids:
            out = row["outputs"].get(cid)
            if out is None:
                cells.append("—")
                continue
            mark = "✓" if out["passed"] else "✗"
            if "diff" in out:
                # Without colour (a pipe, NO_COLOR) strike and green vanish, so the changes are
                # marked the way wdiff marks them: [-removed-]{+added+}.
                marks = _PLAIN_MARKS if plain else _COLOUR_MARKS
                text = "".join(
                    escape(t) if op == "=" else f"{marks[op][0]}{escape(t)}{marks[op][1]}"
                    for op, t in out["diff"]
                )
            else:
                text = escape(out["output"])
            cells.append(f"{mark} {text}")
        cases.add_row(*cells)
    console.print(cases)
    if len(comparison["cases"]) > max_cases:
        console.print(f"… {len(comparison['cases']) - max_cases} more cases (use --json or --html for all)")


_COLOUR_MARKS = {"-": ("[red strike]", "[/]"), "+": ("[green]", "[/]")}
_PLAIN_MARKS = {"-": ("\\[-", "-]"), "+": ("{+", "+}")}  # rich reads \[ as a literal "["


def _short(text: str, n: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}
th{background:#f3f3f3}
pre{margin:0;white-space:pre-wrap;font-size:.9em;max-width:40em}
tr.regression td{background:#fde8e8}
tr.improvement td{background:#e8f8ec}
tr.still_failing td{background:#fff8e1}
del{background:#f8c8c8;text-decoration:line-through}
ins{background:#c8f0d0;text-decoration:none}
.pass{color:#167a2f;font-weight:bold}.fail{color:#b3261e;font-weight:bold}
.neg{color:#b3261e}.pos{color:#167a2f}
"""


def render_html(comparison: Mapping[str, Any], *, title: str = "ForgeMind comparison",
                labels: Mapping[str, str] | None = None) -> str:
    """A self-contained HTML page (inline CSS, no script, every value escaped): scores with the
    number of cases next to every percentage, charts (inline SVG), failure analysis, cases.
    ``labels`` names checkpoints (``it 2``, :func:`~forgemind_core.trials.compare_charts.checkpoint_labels`)."""
    e = html.escape
    ids: list[str] = comparison["checkpoints"]
    names = {cid: (labels or {}).get(cid, cid) for cid in ids}
    counts = case_counts(comparison)

    def head(cid: str) -> str:
        return f"<th>{e(names[cid])}" + (f"<br><small><code>{e(cid)}</code></small>" if names[cid] != cid else "") + "</th>"

    def pct(value: float | None, tier: str, cat: str | None, cid: str) -> str:
        n = counts.get((tier, cat, cid))
        return _pct(value) + (f" of {n}" if value is not None and n else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Baseline: <code>{e(comparison['baseline'])}</code>. "
        f'<strong class="fail">{len(comparison["regressions"])} regressions</strong>, '
        f'<span class="pass">{len(comparison["improvements"])} improvements</span>.</p>',
        "<h2>Scores</h2><table><tr><th>tier / category</th>",
    ]
    parts += [head(cid) for cid in ids]
    parts.append("</tr>")

    def delta_cell(text: str, delta: float | None) -> str:
        if delta is None:
            return f"<td>{e(text)}</td>"
        cls = "neg" if delta < 0 else "pos" if delta > 0 else ""
        return f'<td>{e(text)} <span class="{cls}">({e(_delta(delta))})</span></td>'

    for tier, row in comparison["tiers"].items():
        parts.append(f"<tr><th>{e(tier)}</th><td>{e(pct(row['accuracy'].get(ids[0]), tier, None, ids[0]))}</td>")
        parts += [delta_cell(pct(row["accuracy"].get(c), tier, None, c), row["delta"].get(c)) for c in ids[1:]]
        parts.append("</tr>")
        for cat, values in row["per_category"].items():
            deltas = row["category_delta"].get(cat, {})
            parts.append(f"<tr><td>&nbsp;&nbsp;{e(cat)}</td><td>{e(pct(values.get(ids[0]), tier, cat, ids[0]))}</td>")
            parts += [delta_cell(pct(values.get(c), tier, cat, c), deltas.get(c)) for c in ids[1:]]
            parts.append("</tr>")
    parts.append("</table><h2>Charts</h2>" + "".join(comparison_charts(comparison, names)))
    findings = [(tier, names[cid], what, finding) for tier, row in comparison["tiers"].items() for cid in ids
                for what, finding in analysis_rows(row.get("analysis", {}).get(cid))]
    if findings:
        parts.append("<h2>What is wrong inside the failures</h2><table><tr><th>tier</th><th>checkpoint</th>"
                     "<th>what</th><th>finding</th></tr>")
        parts += [f"<tr><td>{e(t)}</td><td>{e(c)}</td><td>{e(w)}</td><td>{e(f)}</td></tr>" for t, c, w, f in findings]
        parts.append("</table>")
    parts.append(
        "<h2>Cases (regressions first)</h2><table><tr><th>status</th><th>case / tier / category</th>"
        "<th>input</th><th>expected</th>"
    )
    parts += [head(cid) for cid in ids]
    parts.append("</tr>")
    for row in comparison["cases"]:
        parts.append(
            f'<tr class="{e(row["status"])}"><td>{e(row["status"])}</td>'
            f"<td>{e(row['case_id'])}<br>{e(row['tier'])} / {e(row['category'] or '-')}</td>"
            f"<td><pre>{e(row['input'])}</pre></td><td><pre>{e(row['expected'])}</pre></td>"
        )
        for cid in ids:
            out = row["outputs"].get(cid)
            if out is None:
                parts.append("<td>—</td>")
                continue
            mark = '<span class="pass">✓</span>' if out["passed"] else '<span class="fail">✗</span>'
            if "diff" in out:
                body = "".join(
                    e(t) if op == "=" else (f"<del>{e(t)}</del>" if op == "-" else f"<ins>{e(t)}</ins>")
                    for op, t in out["diff"]
                )
            else:
                body = e(out["output"])
            reason = f"<br><small>{e(out['reason'])}</small>" if out.get("reason") else ""
            parts.append(f"<td>{mark}<pre>{body}</pre>{reason}</td>")
        parts.append("</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
