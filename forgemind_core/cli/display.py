"""Live terminal output for runs: iteration lines and progress bars (rich), on stderr.

Stdout stays free for ``--json`` output, so ``forge run GOAL --json | jq`` works while a person
watching the terminal still sees progress.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from forgemind_hookspecs import Event

from forgemind_core.cli.tools import console, echo_json

__all__ = [
    "RichReporter",
    "SummarySection",
    "decision_reasons",
    "finish_run",
    "plan_cell",
    "print_summary",
    "run_reporter",
    "summary_plot",
    "summary_tiers",
]


class RichReporter:
    """Prints the loop's lines and renders ``ctx.progress`` tasks as rich progress bars with ETA."""

    def __init__(self, console: Any = None, *, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True, highlight=False)
        self.quiet = quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def event(self, event: Event) -> None:
        return None

    def progress(self, description: str, total: float | None = None) -> Any:
        if self.quiet or not self.console.is_terminal:
            return _LogTask(self, description, total)
        return _RichTask(self.console, description, total)


class _RichTask:
    def __init__(self, console: Any, description: str, total: float | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, info="")

    def advance(self, n: float = 1, **fields: Any) -> None:
        info = "  ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        if info:
            self._progress.update(self._task, advance=n, info=info)
        else:
            self._progress.update(self._task, advance=n)

    def close(self) -> None:
        self._progress.stop()


class _LogTask:
    """Outside a terminal (CI logs, pipes): one line at the start and one at the end."""

    def __init__(self, reporter: RichReporter, description: str, total: float | None) -> None:
        self._reporter = reporter
        self._description = description
        self._done = 0.0
        self._fields: dict[str, Any] = {}

    def advance(self, n: float = 1, **fields: Any) -> None:
        self._done += n
        self._fields.update(fields)

    def close(self) -> None:
        info = "  ".join(f"{k}={_fmt(v)}" for k, v in self._fields.items())
        self._reporter.line(f"  [dim]{self._description}: {self._done:g} done {info}[/dim]")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_reporter(as_json: bool) -> RichReporter:
    """The reporter of `forge run`/`resume`/`iterate`: live lines, quiet when stdout is JSON and stderr no terminal."""
    return RichReporter(quiet=False) if not as_json or sys.stderr.isatty() else RichReporter(quiet=True)


def finish_run(summary: dict[str, Any], as_json: bool) -> None:
    """Print a run's summary (a table, or JSON) and exit 1 unless it promoted a model."""
    if as_json:
        echo_json(summary)
    else:
        print_summary(summary)
    if summary.get("outcome") != "promoted":
        sys.exit(1)


#: Sections printed after the summary table by ``forge show RUN`` (each gets the summary and the
#: console); another readout adds its own here (e.g. failure analysis of evaluation reports).
SummarySection = Callable[[Mapping[str, Any], Any], None]


def plan_cell(plan: Mapping[str, Any]) -> str:
    """An iteration's plan in a few words: ``16 basic`` per generator, then train overrides."""
    parts = [f"{g.get('count')} {g.get('strategy') or g.get('generator')}" for g in plan.get("generation") or []]
    text = " + ".join(parts) or f"{plan.get('dataset_size', '-')} examples"
    train = plan.get("train") or {}
    if train:
        text += " · " + " ".join(f"{k}={_fmt(v)}" for k, v in sorted(train.items()))
    return text


def summary_tiers(summary: Mapping[str, Any]) -> list[str]:
    """The tiers the run scored, in the Trial Grounds' order (canary, full, adversarial, others)."""
    from forgemind_hookspecs import TIERS

    seen = {t for item in summary["iterations"] for t in item.get("scores") or {}}
    return [t for t in TIERS if t in seen] + sorted(seen - set(TIERS))


def print_summary(summary: Mapping[str, Any], sections: Sequence[SummarySection] = ()) -> None:
    """The table a run prints at its end (and ``forge show RUN``): per iteration the plan, data
    generated and kept, the score of each tier, the last training loss (when the summary has the
    loss curves, as ``forge show`` reads them), seconds, cost and the decision; a line of each
    iteration's estimated / actual training seconds and their ratio; then ``sections``, then the
    outcome and where the model is."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    out = console()
    tiers = summary_tiers(summary) or ["canary", "full"]
    table = Table(title=f"run {summary['run_id']}" + (f" ({summary['goal']})" if summary.get("goal") else ""),
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("it", justify="right", no_wrap=True)
    table.add_column("plan", overflow="fold", min_width=8)
    table.add_column("gen", justify="right", no_wrap=True)
    table.add_column("kept", justify="right", no_wrap=True)
    for tier in tiers:
        table.add_column("adv" if tier == "adversarial" else tier, justify="right", no_wrap=True)
    with_loss = any("loss_curve" in item for item in summary["iterations"])  # forge show adds the curves
    for column in ("loss", "time", "cost") if with_loss else ("time", "cost"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("decision", no_wrap=True)
    for item in summary["iterations"]:
        scores = item["scores"]
        curve = item.get("loss_curve") or []
        table.add_row(
            str(item["iteration"]),
            escape(plan_cell(item.get("plan") or {})),
            str(item["data"]["generated"]),
            str(item["data"]["kept"]),
            *(f"{scores[t]:.0%}" if t in scores else "-" for t in tiers),
            *([f"{curve[-1]:.3f}" if curve else "-"] if with_loss else []),
            f"{float(item.get('seconds') or 0.0):.1f}s",
            f"${item['cost_usd']:.4f}",
            (item.get("decision") or {}).get("action", "-"),
        )
    out.print(table)
    errors = [(item["iteration"], item["estimate_error"]) for item in summary["iterations"] if item.get("estimate_error")]
    if errors:  # how far each iteration's training estimate was from what training took
        out.print("estimate vs training: " + "; ".join(
            f"it {n} ~{e['estimated_s']:.1f}s / {e['actual_s']:.1f}s = {e['ratio']:.2f}x ({e['basis']})" for n, e in errors))
    for section in sections:
        section(summary, out)
    if summary.get("outcome"):
        out.print(f"outcome: [bold]{summary['outcome']}[/bold] - " + escape("; ".join(summary.get("reasons") or [])))
    else:
        out.print(f"status: {summary.get('status') or '-'} (not finished: `forge status {summary['run_id']}`)")
    stable = summary.get("stable_checkpoint")
    if stable:
        out.print(f"stable model: {stable.get('path')}  (checkpoint {stable['id']})")
        out.print(f"trace it:     forge lineage {stable['id']}")
    elif best := summary.get("best_checkpoint"):
        out.print(f"best try:     iteration {best['iteration']}, {best['tier']} {best['score']:.1%}: "
                  f"{best.get('path')}  (checkpoint {best['id']})")
    out.print(f"inspect run:  forge show {summary['run_id']}    (wall time {summary['wall_s']:.0f} s)")


def decision_reasons(summary: Mapping[str, Any], out: Any) -> None:
    """A summary section: each iteration's decision with its reasons (the planner's why)."""
    from rich.markup import escape

    for item in summary["iterations"]:
        decision = item.get("decision") or {}
        if decision:
            reasons = "; ".join(decision.get("reasons") or []) or "-"
            out.print(f"iteration {item['iteration']}: {decision.get('action')} - {escape(reasons)}")


def summary_plot(summary: Mapping[str, Any], *, width: int = 78, color: bool = False) -> str:
    """Two terminal charts (plotext): the training loss per step of each iteration, and each
    tier's score per iteration. The y ticks are the run's own numbers (each iteration's first
    and last loss; the scores reached) and the x ticks of the scores name the iterations."""
    import plotext as plt

    parts = []
    curves = [(item["iteration"], item.get("loss_curve") or []) for item in summary["iterations"]]
    curves = [(n, c) for n, c in curves if c]
    if curves:
        plt.clear_figure()
        plt.theme("pro" if color else "clear")
        plt.plotsize(width, 16)
        ticks: set[float] = set()
        for n, curve in curves:
            plt.plot(list(range(1, len(curve) + 1)), list(curve), label=f"iteration {n}", marker="braille")
            ticks |= {round(float(curve[0]), 3), round(float(curve[-1]), 3)}
        plt.yticks(sorted(ticks), [f"{t:.3f}" for t in sorted(ticks)])
        longest = max(len(c) for _, c in curves)
        steps = sorted({1, longest, *range(1, longest + 1, max(1, longest // 5))})
        plt.xticks(steps, [str(x) for x in steps])
        plt.title(f"training loss per step, run {summary['run_id']}")
        plt.xlabel("step")
        parts.append(plt.build())
    tiers = summary_tiers(summary)
    if tiers:
        plt.clear_figure()
        plt.theme("pro" if color else "clear")
        plt.plotsize(width, 14)
        iterations = [item["iteration"] for item in summary["iterations"]]
        values: set[float] = set()
        for tier in tiers:
            points = [(item["iteration"], 100 * float(item["scores"][tier]))
                      for item in summary["iterations"] if tier in item["scores"]]
            plt.plot([x for x, _ in points], [y for _, y in points], label=tier, marker="dot")
            values |= {round(y, 1) for _, y in points}
        plt.xticks(iterations, [f"it {n}" for n in iterations])
        plt.yticks(sorted(values), [f"{v:.0f}%" if v == int(v) else f"{v:.1f}%" for v in sorted(values)])
        plt.ylim(0, 105)
        plt.title("score per iteration (%)")
        parts.append(plt.build())
    text = "\n".join(parts) if parts else "nothing to plot yet: no iteration has trained or been scored\n"
    return text if color else str(plt.uncolorize(text))
