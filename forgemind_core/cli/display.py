"""Live terminal output for runs: iteration lines and progress bars (rich), on stderr.

Stdout stays free for ``--json`` output, so ``forge run GOAL --json | jq`` works while a person
watching the terminal still sees progress.
"""

from __future__ import annotations

from typing import Any

from forgemind_hookspecs import Event

__all__ = ["RichReporter"]


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
