"""Live terminal output for runs: iteration lines and progress bars (rich), on stderr.

Stdout stays free for ``--json`` output, so ``forge run GOAL --json | jq`` works while a person
watching the terminal still sees progress.
"""

from __future__ import annotations

import sys
from typing import Any

from forgemind_hookspecs import Event

from forgemind_core.cli.tools import console, echo_json

__all__ = ["RichReporter", "finish_run", "print_summary", "run_reporter"]


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


def print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=f"run {summary['run_id']}", title_justify="left")
    for column in ("iteration", "generated", "kept", "canary", "full", "adversarial", "cost", "decision"):
        table.add_column(column, justify="right" if column not in ("decision",) else "left")
    for item in summary["iterations"]:
        scores = item["scores"]
        decision = (item.get("decision") or {}).get("action", "-")
        table.add_row(
            str(item["iteration"]),
            str(item["data"]["generated"]),
            str(item["data"]["kept"]),
            *(f"{scores[t]:.0%}" if t in scores else "-" for t in ("canary", "full", "adversarial")),
            f"${item['cost_usd']:.4f}",
            decision,
        )
    out.print(table)
    out.print(f"outcome: [bold]{summary['outcome']}[/bold] - " + "; ".join(summary.get("reasons") or []))
    stable = summary.get("stable_checkpoint")
    if stable:
        out.print(f"stable model: {stable.get('path')}  (checkpoint {stable['id']})")
        out.print(f"trace it:     forge lineage {stable['id']}")
    elif best := summary.get("best_checkpoint"):
        out.print(f"best try:     iteration {best['iteration']}, {best['tier']} {best['score']:.1%}: "
                  f"{best.get('path')}  (checkpoint {best['id']})")
    out.print(f"inspect run:  forge show {summary['run_id']}    (wall time {summary['wall_s']:.0f} s)")
