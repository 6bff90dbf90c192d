"""``forge report RUN --html OUT``: one self-contained HTML page about a run (docs/readouts.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from forgemind_core.cli.tools import console, pass_forge

__all__ = ["report"]


@click.command("report")
@click.argument("run_id")
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here: goal, plans and reasons, loss and score charts, data, lineage.")
@pass_forge
def report(forge: Any, run_id: str, html_path: Path) -> None:
    """Write a run's report as one HTML page (inline SVG charts, no script, opens from disk)."""
    from forgemind_hookspecs import UserError, to_dict

    from forgemind_core.base.fsio import write_text
    from forgemind_core.lorekeeper.readouts import lineage_tree
    from forgemind_core.lorekeeper.report import render_run_report
    from forgemind_core.lorekeeper.runs import goal_of

    registry = forge.registry()
    details = registry.run(run_id)
    if details is None:
        raise UserError(f"no run {run_id!r} in the registry at {forge.home}")
    run_id = str(details["run"]["id"])
    summary = forge.summary(run_id)
    model = summary.get("stable_checkpoint") or summary.get("best_checkpoint")
    tree = lineage_tree(registry, forge.home, forge.lineage(model["id"])) if model else None
    page = render_run_report(summary, home=forge.home, goal=to_dict(goal_of(Path(forge.home), run_id)),
                             lineage=tree, rejections=registry.rejections(run_id))
    if not html_path.parent.is_dir():
        raise UserError(f"cannot write the report: folder {html_path.parent} does not exist", file=str(html_path))
    try:
        write_text(html_path, page)
    except OSError as error:
        raise UserError(f"cannot write the report ({error.strerror})", file=str(html_path)) from None
    console().print(f"report of run {run_id}: {html_path}")
