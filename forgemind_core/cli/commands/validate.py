"""``forge validate``: check a goal file (and/or a data file) before spending anything on it.

A user mistake should cost seconds, not a failed run: this command reports *every* problem at
once, one sentence each with file, line and field, and exits 2 when there is any (0 otherwise).
Goal files are checked against the backends this kernel has installed, so a misspelt backend or
option is caught here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from forgemind_core.cli.tools import echo_json, json_option, pass_forge

if TYPE_CHECKING:  # forge --help must not import the API
    from forgemind_core.api import Forge

__all__ = ["DATA_FORMATS", "problem_dict", "validate"]

#: The ``--format`` choices; kept equal to ``forgemind_hookspecs.dataformats.FORMATS`` (a test
#: checks it) without importing that module when ``forge --help`` runs.
DATA_FORMATS: tuple[str, ...] = ("prompt_completion", "chat", "csv", "text")


def problem_dict(error: Exception) -> dict[str, Any]:
    """A problem as ``--json`` prints it: ``file``, ``line``, ``field``, ``message``."""
    return {
        "file": getattr(error, "file", None),
        "line": getattr(error, "line", None),
        "field": getattr(error, "field", None),
        "message": getattr(error, "message", str(error)),
    }


def _parse_columns(columns: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in columns:
        field, sep, header = item.partition("=")
        if not sep or not field.strip() or not header.strip():
            raise click.BadParameter(
                f"expected FIELD=HEADER (e.g. prompt=question), got {item!r}", param_hint="--column"
            )
        mapping[field.strip()] = header.strip()
    return mapping


@click.command("validate")
@click.argument("goal", required=False, type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path),
    help="Check a training-data file row by row instead of (or as well as) a goal file.",
)
@click.option(
    "--format",
    "data_format",
    type=click.Choice([*DATA_FORMATS, "alpaca", "sharegpt", "messages"]),  # presets: docs/foundry.md
    help="The data file's format (default: guessed from its suffix and first row).",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="FIELD=HEADER",
    help="For CSV data: which header holds a field, e.g. --column prompt=question (repeatable).",
)
@json_option
@pass_forge
def validate(
    forge: Forge,
    goal: Path | None,
    data: Path | None,
    data_format: str | None,
    columns: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check GOAL.yaml (and/or --data FILE) and list every problem; exit 2 if there is any.

    \b
    forge validate goal.yaml
    forge validate --data train.jsonl --format chat
    forge validate --data rows.csv --column prompt=question --column completion=answer
    """
    if goal is None and data is None:
        raise click.UsageError("give a goal file, --data FILE, or both")
    if (data_format is not None or columns) and data is None:
        raise click.UsageError("--format and --column apply to --data FILE")
    column_map = _parse_columns(columns)
    problems: list[Exception] = []
    if goal is not None:
        from forgemind_core.brain.goals import validate_goal

        problems.extend(validate_goal(goal, forge.catalogue()))
    if data is not None:
        from forgemind_hookspecs.presets import validate_source  # also presets, tables, hub:NAME

        problems.extend(validate_source(data, format=data_format, columns=column_map or None))
    if as_json:
        echo_json({"ok": not problems, "problems": [problem_dict(p) for p in problems]})
    elif not problems:
        click.echo("ok")
    else:
        for problem in problems:
            click.echo(str(problem), err=True)
    if problems:
        click.get_current_context().exit(2)
