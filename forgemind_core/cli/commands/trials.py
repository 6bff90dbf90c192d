"""Commands of the Trial Grounds: ``forge eval`` and ``forge compare``.

``forge eval`` scores any checkpoint (a registry id or a model folder) on any suite file, outside
a run; ``forge compare`` puts checkpoints side by side, regressions first, from the reports their
runs recorded or from a fresh evaluation on ``--suite``. Both are ``Forge.evaluate`` and
``Forge.compare`` (forgemind_core/adhoc.py) with options parsed and results printed: the setup
(pack, prompt format, runner, scorers) lives there once, shared with the dashboard.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from forgemind_core.cli.tools import console, echo_json, json_option, key_values, pass_forge

__all__ = ["compare_command", "eval_command"]

_TIERS = ("canary", "full", "adversarial")


class _Progress:
    """A ``ctx.progress`` that draws rich bars on stderr (only for people, never under --json)."""

    def __init__(self) -> None:
        from rich.progress import Progress

        from forgemind_core.cli.tools import err_console

        self.progress = Progress(console=err_console(), transient=True)

    def __call__(self, description: str, total: float | None = None) -> Any:
        progress = self.progress
        progress.start()
        task_id = progress.add_task(description, total=total)

        class Task:
            def advance(self, n: float = 1, **fields: Any) -> None:
                progress.advance(task_id, n)

            def close(self) -> None:
                progress.remove_task(task_id)
                progress.stop()

        return Task()


def _eval_options(options: Mapping[str, Any], as_json: bool) -> dict[str, Any]:
    """The options of :func:`_common` as ``Forge.evaluate`` / ``Forge.compare`` take them;
    progress bars only for a person at a terminal (never under --json)."""
    return {
        "tier": options["tier"],
        "runner": options["runner"],
        "runner_options": key_values(options["runner_option"], "runner-option"),
        "pack": options["pack_dir"],
        "prompt_format": options["prompt_format"],
        "scorer": options["scorer"],
        "max_new_tokens": options["max_new_tokens"],
        "progress": _Progress() if not as_json and sys.stderr.isatty() else None,
    }


def _common(fn: Any) -> Any:
    options = [
        click.option(
            "--runner", default="hf", show_default=True, help="Runner backend that generates the outputs."
        ),
        click.option(
            "--runner-option", "-o", multiple=True, metavar="KEY=VALUE", help="Runner option (repeatable)."
        ),
        click.option(
            "--pack",
            "pack_dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Task pack folder: its prompt format and labels.",
        ),
        click.option(
            "--prompt-format", help="Prompt around each input; {input} marks the spot. Default: {input}."
        ),
        click.option(
            "--tier",
            type=click.Choice(_TIERS),
            default="full",
            show_default=True,
            help="Tier the suite's cases belong to.",
        ),
        click.option(
            "--scorer",
            help="Scorer for cases without a checker (default: the pack's `scoring`, else "
            "label_match with a pack that has labels, else exact_match).",
        ),
        click.option("--max-new-tokens", type=click.IntRange(1), default=64, show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _short(text: str, n: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _print_report(checkpoint: Any, report: Any, suite: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    cases = Table(title=f"{report.tier}: {escape(str(suite))} on {checkpoint.id}", title_justify="left")
    for column in ("", "id", "category", "input", "expected", "output", "why"):
        cases.add_column(column)
    for result in sorted(report.results, key=lambda r: r.passed):  # failures first: they need attention
        cases.add_row(
            "[green]✓[/]" if result.passed else "[red]✗[/]",
            escape(result.case_id),
            escape(result.category or "-"),
            escape(_short(result.input, 60)),
            escape(_short(result.expected, 30)),
            escape(_short(result.output, 50)),
            escape(_short(str(result.details.get("reason", "")), 60)),
        )
    out.print(cases)
    metrics = report.metrics
    cats = Table(title="per category", title_justify="left")
    cats.add_column("category")
    cats.add_column("n", justify="right")
    cats.add_column("accuracy", justify="right")
    for cat, acc in metrics["per_category"].items():
        cats.add_row(escape(cat), str(metrics["per_category_n"][cat]), f"{acc:.1%}")
    out.print(cats)
    style = metrics["style"]
    out.print(
        f"[bold]accuracy {metrics['accuracy']:.1%}[/]  pass rate {metrics['pass_rate']:.1%}  n {metrics['n']}  "
        f"distinct-1 {metrics['distinct_1']:.2f}  distinct-2 {metrics['distinct_2']:.2f}  "
        f"format match {style['format_match']:.0%}  length ratio {style['length_ratio']:.2f}"
    )
    from forgemind_core.trials.analysis import analysis_rows, report_analysis

    rows = analysis_rows(report_analysis(report))
    if rows:
        failures = Table(title="what is wrong inside the failures", title_justify="left")
        failures.add_column("what")
        failures.add_column("finding")
        for what, finding in rows:
            failures.add_row(what, escape(finding))
        out.print(failures)


@click.command("eval")
@click.argument("checkpoint")
@click.option(
    "--suite",
    "suite_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL suite: one case per line (input, expected, category, checker?, meta?).",
)
@_common
@json_option
@pass_forge
def eval_command(forge: Any, checkpoint: str, suite_path: Path, as_json: bool, **options: Any) -> None:
    """Score CHECKPOINT (a checkpoint id or a model folder) on a suite file.

    Prints every case (failures first), per-category and overall scores and what is wrong inside
    the failures (confusions, wrong parts, mode collapse); --json for machines.
    """
    from forgemind_hookspecs import to_dict

    from forgemind_core.base.servers import ServerPool
    from forgemind_core.lorekeeper.served import RegistryModels
    from forgemind_core.trials.tiers import resolve_checkpoint

    with ServerPool(forge, context=lambda: forge.context(stage="servers"),  # a server= option
                    resolver=RegistryModels(forge)) as servers:
        runner_options = servers.options("runners", options["runner"],
                                         key_values(options["runner_option"], "runner-option"), field="runner")
        runner = forge.backend("runners", options["runner"], runner_options, field="runner")
        ckpt = resolve_checkpoint(forge, checkpoint, runner)  # a runner may name what CHECKPOINT means (openai)
        report = forge.evaluate(
            ckpt,
            suite_path,
            **{**_eval_options(options, as_json), "runner_options": runner_options},
        )
    if as_json:
        echo_json({"checkpoint": to_dict(ckpt), "suite": str(suite_path), "report": to_dict(report)})
    else:
        _print_report(ckpt, report, suite_path)


@click.command("compare")
@click.argument("checkpoints", nargs=-1, required=True)
@click.option(
    "--suite",
    "suite_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Evaluate every checkpoint on this suite now instead of using recorded reports.",
)
@_common
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report here.",
)
@click.option(
    "--limit", type=click.IntRange(1), default=50, show_default=True, help="Cases shown in the terminal."
)
@json_option
@pass_forge
def compare_command(
    forge: Any,
    checkpoints: tuple[str, ...],
    suite_path: Path | None,
    html_path: Path | None,
    limit: int,
    as_json: bool,
    **options: Any,
) -> None:
    """Compare checkpoints A B [C ...]: A is the baseline; regressions (A passed, later fails) first.

    Uses the evaluations recorded by runs, or evaluates each checkpoint on --suite now.
    """
    from forgemind_hookspecs import UserError

    from forgemind_core.trials.compare import render_html, render_rich

    comparison = forge.compare(
        list(checkpoints),
        suite=suite_path,
        **_eval_options(options, as_json),
    )
    if html_path is not None:
        from forgemind_hookspecs import ForgeError

        from forgemind_core.trials.compare_charts import checkpoint_labels

        try:  # iteration labels (it 1, it 2) need the registry; without one the ids stay
            labels = checkpoint_labels(forge.registry(), comparison["checkpoints"])
        except ForgeError:
            labels = {}
        try:
            html_path.write_text(render_html(comparison, labels=labels), encoding="utf-8")
        except OSError as error:
            raise UserError(f"cannot write the HTML report ({error.strerror})", file=str(html_path)) from None
    if as_json:
        echo_json(comparison)
    else:
        render_rich(comparison, console(), max_cases=limit)
        if html_path is not None:
            console().print(f"HTML report: {html_path}")
