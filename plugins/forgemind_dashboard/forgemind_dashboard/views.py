"""What the dashboard shows, as plain data and HTML: YAML previews of what will run, job logs and
loss curves from a job's events, the side-by-side comparison. No gradio here, so it is tested
without a browser; every number comes from the ``Forge`` API."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "comparison_html",
    "events_log",
    "export_markdown",
    "iterations_rows",
    "job_status_html",
    "lineage_markdown",
    "loss_frame",
    "metric_frame",
    "metric_plot_start",
    "pretrain_yaml",
    "review_rows",
    "run_tree_html",
    "train_yaml",
]

#: Column dtypes of the plotted frames. Gradio's LinePlot builds its chart once, from the dtypes of
#: the value it starts with (numbers: a quantitative axis or colour scale, strings: nominal), and
#: afterwards only swaps the rows; a start value whose series column is not a string gives a
#: continuous colour scale, and vega then draws no line at all. So the empty start value and
#: every later value have the same dtypes, fixed here.
LOSS_DTYPES = {"step": "int64", "loss": "float64", "series": "str"}
METRIC_DTYPES = {"iteration": "Int64", "value": "float64", "tier": "str"}
#: The tiers a run evaluates. The chart's colour domain (and legend) also comes from its first
#: value only, so the metric plot starts with one empty row (no iteration, no value) per tier.
TIERS = ("canary", "full", "adversarial")


def _frame(rows: Sequence[Mapping[str, Any]], dtypes: Mapping[str, str]) -> Any:
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(dtypes)).astype(dict(dtypes))


def _yaml(data: Any) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))


def _cli_value(value: Any) -> str:
    import json
    import shlex

    return shlex.quote(value if isinstance(value, str) else json.dumps(value))


def pretrain_yaml(corpus: str | None, preset: str, options: Mapping[str, Any]) -> str:
    """The pre-training that will run, as a goal file's ``pretrain:`` section, and the same as a command."""
    flags = " ".join(f"--{k} {v}" for k, v in options.items() if k in ("steps", "tokens", "seed"))
    extra = {k: v for k, v in options.items() if k not in ("steps", "tokens", "seed")}
    head = f"# forge pretrain {_cli_value(corpus or 'CORPUS')} --preset {preset} {flags}".rstrip()
    if extra:
        head += "\n# (Python: Forge.pretrain(corpus, preset=..., options=...) also takes the shape options below)"
    return head + "\n" + _yaml({"pretrain": {"corpus": corpus or "(upload a corpus)", "preset": preset,
                                             "options": dict(options)}})


def train_yaml(base: str | None, data: str | None, fmt: str | None, columns: Mapping[str, str], method: str,
               hyperparameters: Mapping[str, Any]) -> str:
    """The fine-tuning that will run, as ``forge train`` and as a goal file's ``train:`` section."""
    parts = [f"forge train --base {_cli_value(base or 'BASE')} --data {_cli_value(data or 'DATA')}",
             f"--method {method}"]
    if fmt:
        parts.append(f"--format {fmt}")
    parts += [f"--column {k}={_cli_value(v)}" for k, v in columns.items()]
    parts += [f"--set {k}={_cli_value(v)}" for k, v in hyperparameters.items()]
    section: dict[str, Any] = {"base": base or "(choose a base model)", "data": data or "(upload a dataset)",
                               "method": method}
    if fmt:
        section["format"] = fmt
    if columns:
        section["columns"] = dict(columns)
    section["train"] = {"backend": "hf", **hyperparameters}
    return "# " + " ".join(parts) + "\n" + _yaml(section)


def events_log(events: Sequence[Mapping[str, Any]], limit: int = 400) -> str:
    """One line per event, newest last (metrics every few steps only, so the log stays readable)."""
    lines = []
    for event in events:
        payload = event.get("payload") or {}
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time") or 0))
        kind = event.get("kind")
        if kind == "metric":
            name = payload.get("name", "")
            if name.endswith("tokens_per_s"):
                continue
            value = payload.get("value")
            text = f"{name} = {value:.4f}" if isinstance(value, (int, float)) else f"{name} = {value}"
            lines.append(f"{stamp}  step {payload.get('step')}: {text}")
        elif kind in ("stage.started", "stage.finished"):
            lines.append(f"{stamp}  iteration {payload.get('iteration')}: {payload.get('stage')} "
                         f"{'started' if kind == 'stage.started' else 'finished'}")
        elif kind == "eval.report":
            metrics = payload.get("metrics") or {}
            lines.append(f"{stamp}  iteration {payload.get('iteration')}: {payload.get('tier')} accuracy "
                         f"{metrics.get('accuracy', 0):.1%}")
        elif kind == "decision":
            decision = payload.get("decision") or {}
            lines.append(f"{stamp}  iteration {payload.get('iteration')}: decision {decision.get('action')} - "
                         + "; ".join(decision.get("reasons") or []))
        elif kind == "run.finished":
            lines.append(f"{stamp}  run finished: {payload.get('outcome')} - " + "; ".join(payload.get("reasons") or []))
        else:
            simple = ", ".join(f"{k}={v}" for k, v in payload.items()
                               if isinstance(v, (str, int, float)) and k not in ("iteration", "stage"))
            lines.append(f"{stamp}  {kind} {simple}".rstrip())
    return "\n".join(lines[-limit:])


def loss_frame(events: Sequence[Mapping[str, Any]]) -> Any:
    """``step``, ``loss`` (and ``series`` per iteration of a run) from ``train.loss`` metric events."""
    rows = []
    for event in events:
        payload = event.get("payload") or {}
        if event.get("kind") == "metric" and payload.get("name") == "train.loss":
            it = payload.get("iteration")
            rows.append({"step": int(payload.get("step") or 0), "loss": float(payload["value"]),
                         "series": f"iteration {it}" if it else "train"})
    return _frame(rows, LOSS_DTYPES)


def job_status_html(job: Mapping[str, Any]) -> str:
    """Status, elapsed time and the current progress bar of a job."""
    status = str(job.get("status"))
    colour = {"finished": "#1a7f37", "failed": "#cf222e", "interrupted": "#9a6700"}.get(status, "#0969da")
    started = job.get("started") or job.get("created") or time.time()
    ended = job.get("ended") or time.time()
    parts = [f'<span class="fm-status" style="color:{colour}"><b>{html.escape(status)}</b></span> '
             f'job <code>{html.escape(str(job.get("id")))}</code> ({html.escape(str(job.get("kind")))}), '
             f'{max(0.0, ended - started):.0f} s']
    progress = job.get("progress") or {}
    total = progress.get("total")
    if progress and status in ("running", "queued"):
        done = float(progress.get("completed") or 0)
        pct = min(100.0, 100.0 * done / total) if total else 0.0
        fields = ", ".join(f"{k} {v}" for k, v in (progress.get("fields") or {}).items())
        parts.append(f'<div class="fm-progress"><div style="width:{pct:.0f}%"></div></div>'
                     f'{html.escape(str(progress.get("description")))}: {done:.0f}/{total or "?"} {html.escape(fields)}')
    if job.get("error"):
        parts.append(f'<div class="fm-error">{html.escape(str(job["error"]))}</div>')
    return "<br>".join(parts)


def iterations_rows(status: Mapping[str, Any]) -> list[list[Any]]:
    """A run's iterations as table rows: iteration, stages done, canary, full, adversarial."""
    rows = []
    for it in status.get("iterations") or []:
        scores = it.get("scores") or {}

        def pct(tier: str, scores: Mapping[str, Any] = scores) -> str:
            value = scores.get(tier)
            if isinstance(value, Mapping):
                value = value.get("accuracy")
            return f"{value:.1%}" if isinstance(value, (int, float)) else "-"

        rows.append([it.get("iteration"), ", ".join(it.get("stages_done") or []), pct("canary"), pct("full"),
                     pct("adversarial")])
    return rows


def metric_frame(run: Mapping[str, Any] | None, metric: str) -> Any:
    """``iteration``, ``value``, ``tier`` of one metric over a run's iterations (``Forge.show``)."""
    rows = []
    for it in (run or {}).get("iterations") or []:
        for tier, metrics in (it.get("scores") or {}).items():
            value = metrics.get(metric)
            if value is None and isinstance(metrics.get("style"), Mapping):
                value = metrics["style"].get(metric)
            if isinstance(value, (int, float)):
                rows.append({"iteration": int(it["iteration"]), "value": float(value), "tier": tier})
    return _frame(rows, METRIC_DTYPES)


def metric_plot_start() -> Any:
    """The metric plot's first value: a row per tier without iteration or value (vega draws none),
    so the chart is built with a nominal tier colour and a legend of every tier."""
    return _frame([{"iteration": None, "value": float("nan"), "tier": t} for t in TIERS], METRIC_DTYPES)


def _diff_html(parts: Any, text: str) -> str:
    """A word diff (``[[op, text], ...]``, op ``=``, ``-``, ``+``) with removed and added words marked."""
    if not parts:
        return html.escape(text)
    out = []
    for op, word in parts:
        if op == "+":
            out.append(f'<ins class="fm-add">{html.escape(word)}</ins>')
        elif op == "-":
            out.append(f'<del class="fm-del">{html.escape(word)}</del>')
        else:
            out.append(html.escape(word))
    return "".join(out)


def comparison_html(comparison: Mapping[str, Any], limit: int = 100) -> str:
    """``Forge.compare``'s result as a side-by-side table: scores per tier, then each case's outputs
    per checkpoint, regressions first, words that differ from the baseline highlighted."""
    ckpts = list(comparison.get("checkpoints") or [])
    head = "".join(f"<th>{html.escape(str(c))}{' (baseline)' if i == 0 else ''}</th>" for i, c in enumerate(ckpts))
    score_rows = []
    for tier, data in (comparison.get("tiers") or {}).items():
        cells = []
        for c in ckpts:
            value = (data.get("accuracy") or {}).get(c)
            delta = (data.get("delta") or {}).get(c)
            text = f"{value:.1%}" if isinstance(value, (int, float)) else "-"
            if isinstance(delta, (int, float)) and delta:
                text += f' <span class="{"fm-up" if delta > 0 else "fm-down"}">{delta * 100:+.1f} pts</span>'
            cells.append(f"<td>{text}</td>")
        score_rows.append(f"<tr><th>{html.escape(str(tier))}</th>{''.join(cells)}</tr>")
    case_rows = []
    for case in list(comparison.get("cases") or [])[:limit]:
        outputs = case.get("outputs") or {}
        cells = []
        for c in ckpts:
            entry = outputs.get(c)
            if entry is None:
                cells.append("<td>-</td>")
                continue
            mark, cls = ("✓ ", "fm-pass") if entry.get("passed") else ("✗ ", "fm-fail")
            cells.append(f'<td class="{cls}">{mark}{_diff_html(entry.get("diff"), str(entry.get("output", "")))}</td>')
        status = html.escape(str(case.get("status", "")))
        case_rows.append(f'<tr class="fm-case fm-{status}"><td>{status}</td><td>{html.escape(str(case.get("input", "")))}'
                         f'</td><td>{html.escape(str(case.get("expected", "")))}</td>{"".join(cells)}</tr>')
    counts = comparison.get("counts") or {}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    return (f'<div class="fm-compare"><p>{html.escape(summary)}</p>'
            f'<table class="fm-scores"><tr><th>tier</th>{head}</tr>{"".join(score_rows)}</table>'
            f'<table class="fm-cases"><tr><th>status</th><th>input</th><th>expected</th>{head}</tr>'
            f'{"".join(case_rows)}</table></div>')


def run_tree_html(roots: Sequence[Mapping[str, Any]]) -> str:
    """``Forge.runs_tree`` (what ``forge runs --tree`` prints) as nested HTML lists: each run as
    ``branch @ iteration N: id (status, outcome)``, its forks in a list inside its item. (HTML,
    not indented Markdown bullets: gradio's Markdown renders those as one flat list.)"""

    def item(node: Mapping[str, Any], teacher_run: str | None = None) -> str:
        at = f" @ iteration {node['parent_iteration']}" if node.get("parent_iteration") else ""
        label = (f"<b>{html.escape(str(node.get('branch') or 'main'))}</b>{html.escape(at)}: "
                 f"<code>{html.escape(str(node.get('id')))}</code> "
                 f"({html.escape(str(node.get('status') or '-'))}, {html.escape(str(node.get('outcome') or '-'))})")
        if teacher_run is not None:  # a successor: its data came from the teacher run's model
            taught = [f"{'+'.join(t.get('edges') or [])} by {str(t.get('checkpoint'))[:12]}"
                      for t in node.get("teachers") or [] if t.get("run") == teacher_run]
            label = "successor " + label + (f" &lt;- {html.escape(', '.join(taught))}" if taught else "")
        inner = [item(c) for c in node.get("children") or []]
        inner += [item(s, str(node.get("id"))) for s in node.get("successors") or []]
        return f"<li>{label}" + (f"<ul>{''.join(inner)}</ul>" if inner else "") + "</li>"

    if not roots:
        return "<p>no runs yet</p>"
    return f'<ul class="fm-tree">{"".join(item(r) for r in roots)}</ul>'


def lineage_markdown(data: Mapping[str, Any]) -> str:
    """``Forge.lineage``: ancestors (what it came from) and descendants (what came of it), one
    ``kind id (relation)`` per line indented by depth, then each dataset's sources."""

    def edges(rows: Sequence[Mapping[str, Any]] | None) -> list[str]:
        out = []
        for row in list(rows or [])[:200]:
            depth = max(0, int(row.get("depth") or 1) - 1)
            out.append(f"{'    ' * min(depth, 6)}- {row.get('kind')} `{row.get('id')}` ({row.get('relation')})")
        return out or ["- none"]

    lines = [f"**{data.get('kind')} `{data.get('id')}`**", "", "**ancestors** (what it came from)",
             *edges(data.get("ancestors")), "", "**descendants** (what came of it)", *edges(data.get("descendants"))]
    for ds in data.get("datasets") or []:
        lines += ["", f"**dataset `{ds.get('id')}`** ({ds.get('n_examples')} examples) made by:"]
        for s in ds.get("sources") or []:
            parts = [f"generator `{s.get('generator')}`"]
            if s.get("model"):
                parts.append(f"model `{s['model']}`")
            if s.get("prompt_template"):
                parts.append(f"template `{s['prompt_template']}`")
            lines.append(f"- {s.get('examples', s.get('count', '?'))} examples: " + ", ".join(parts))
    return "\n".join(lines)


def review_rows(items: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Review items as table rows: item, kind, run, iteration, what (prompt → completion, or the
    checkpoint to promote), why (the reasons it was queued)."""
    rows = []
    for item in items:
        payload = item.get("payload") or {}
        example = payload.get("example") if isinstance(payload, Mapping) else None
        if isinstance(example, Mapping):
            what = f"{example.get('prompt', '')!s} → {example.get('completion', '')!s}"
        elif isinstance(payload, Mapping) and payload.get("checkpoint_id"):
            what = f"promote checkpoint {payload['checkpoint_id']} to {payload.get('channel', 'stable')}"
        else:
            what = str(payload)
        reasons = item.get("reasons") or []
        why = "; ".join(str(r) for r in reasons) if isinstance(reasons, (list, tuple)) else str(reasons)
        rows.append([item.get("item_id"), item.get("subject_kind"), item.get("run_id"), item.get("iteration"),
                     what[:300], why[:200]])
    return rows


def export_markdown(result: Mapping[str, Any], archive: str | None) -> str:
    """``Forge.export``'s result: where the bundle is, its files and the zip offered for download."""
    files = list(result.get("files") or [])
    lines = [f"✅ **{result.get('target')} bundle** of checkpoint `{result.get('checkpoint_id')}`",
             f"- folder: `{result.get('out')}`", f"- model: `{result.get('path')}`"]
    if archive:
        lines.append(f"- zip: `{archive}` (download below)")
    lines += ["", f"**{len(files)} files:**", *(f"- `{f}`" for f in files[:60])]
    if len(files) > 60:
        lines.append(f"- … {len(files) - 60} more")
    return "\n".join(lines)
