"""The Warden's commands: ``forge review`` (the review queue) and ``forge approve`` (promotions).

``forge review`` without an action flag, in a terminal, is interactive: one item at a time
with its text, scores and reasons, decided with single keys (``a`` approve, ``r`` reject, ``e``
edit, ``s`` skip, ``q`` quit). Each decision is recorded the moment it is made, so quitting (or
a dropped SSH connection) loses nothing, and items not decided stay pending for the next
session. The non-interactive forms (``--approve ID``, ``--reject ID --reason ...``, ``--edit
ID --completion ...``, ``--export FILE``, ``--import FILE``) do the same from scripts and
other tools. Everything goes through :class:`forgemind_core.Forge`'s review API.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from forgemind_core.cli.tools import console, echo_json, json_option, pass_forge

__all__ = ["approve_command", "review"]

_KEYS = {"a": "approve", "r": "reject", "e": "edit", "s": "skip", "q": "quit"}


def _short(text: Any, limit: int = 60) -> str:
    flat = str(text or "").replace("\n", " ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _print_queue(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"review queue ({len(rows)} pending)", title_justify="left")
    for column in ("item", "run", "kind", "subject", "scores", "reasons"):
        table.add_column(column, overflow="fold")
    for row in rows:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in (row.get("scores") or {}).items())
        table.add_row(row["item_id"], row["run_id"], row["subject_kind"], row["subject_id"], scores,
                      _short("; ".join(row.get("reasons") or []), 80))
    console().print(table)


def _render(out: Any, row: dict[str, Any], index: int, total: int) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    payload = row.get("payload") or {}
    title = f"item {index}/{total}  {row['item_id']}  ({row['subject_kind']}, run {row['run_id']}, iteration {row.get('iteration')})"
    body = Table.grid(padding=(0, 1))
    body.add_column(style="bold", no_wrap=True)
    body.add_column(overflow="fold")
    if row["subject_kind"] == "example":
        example = payload.get("example") or {}
        if example.get("messages"):
            for m in example["messages"]:
                body.add_row(str(m.get("role")), Text(str(m.get("content"))))
        else:
            body.add_row("prompt", Text(str(example.get("prompt", ""))))
            body.add_row("completion", Text(str(example.get("completion", ""))))
        body.add_row("category", Text(str(example.get("category") or "-")))
        source = example.get("source") or {}
        body.add_row("source", Text(f"{source.get('generator')} / {source.get('model') or '-'} / "
                                    f"{source.get('prompt_template') or '-'}"))
    else:
        body.add_row("promote", Text(f"checkpoint {row['subject_id']} to {payload.get('channel', 'stable')}"))
    for name, value in (row.get("scores") or {}).items():
        body.add_row(f"score {name}", f"{value:.3f}")
    for reason in row.get("reasons") or []:
        body.add_row("why", Text(str(reason)))
    out.print(Panel(body, title=title, title_align="left"))


def _interactive(forge: Any, run_id: str | None, reviewer: str | None) -> None:
    out = console()
    rows = forge.review_queue(run_id)
    if not rows:
        out.print("nothing to review: the queue is empty")
        return
    done = {"approve": 0, "reject": 0, "edit": 0, "skip": 0}
    for index, row in enumerate(rows, 1):
        _render(out, row, index, len(rows))
        promotion = row["subject_kind"] == "promotion"
        choices = [("a", "approve"), ("r", "reject"), *([] if promotion else [("e", "edit")]), ("s", "skip"), ("q", "quit")]
        out.print("   ".join(f"[bold reverse] {k} [/bold reverse] {word}" for k, word in choices))
        while True:
            key = click.getchar().lower()
            action = _KEYS.get(key)
            if action is not None and not (promotion and action == "edit"):
                break
        if action == "quit":
            break
        if action == "skip":
            done["skip"] += 1
            out.print("skipped: stays pending\n")
            continue
        reason = None
        edit = None
        if action == "reject":
            reason = click.prompt("reason", default="", show_default=False).strip() or None
        elif action == "edit":
            example = (row.get("payload") or {}).get("example") or {}
            new = click.prompt("new completion", default=str(example.get("completion", "")))
            edit = {"completion": new}
            reason = click.prompt("reason", default="", show_default=False).strip() or None
        forge.review(row["item_id"], action, reason=reason, reviewer=reviewer, edit=edit)
        done[action] += 1
        out.print({"approve": "approved", "reject": "rejected", "edit": "edited"}[action] + ": recorded\n")
    left = len(forge.review_queue(run_id))
    out.print(f"approved {done['approve']}, rejected {done['reject']}, edited {done['edit']}, "
              f"skipped {done['skip']}; {left} still pending")


@click.command()
@click.argument("run_id", required=False)
@click.option("--approve", "approve_ids", multiple=True, metavar="ID", help="Approve this item (repeatable).")
@click.option("--reject", "reject_ids", multiple=True, metavar="ID", help="Reject this item (repeatable).")
@click.option("--edit", "edit_id", metavar="ID", help="Edit this example item (with --completion / --prompt).")
@click.option("--completion", help="The edited example's new completion.")
@click.option("--prompt", "new_prompt", help="The edited example's new prompt.")
@click.option("--reason", help="Why (recorded with the decision).")
@click.option("--reviewer", help="Who decides (default: $USER).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the pending items as JSONL for review in another tool.")
@click.option("--import", "import_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Record the decisions of a JSONL file (an --export file with 'decision' filled in).")
@click.option("--list", "list_only", is_flag=True, help="List the pending items and exit.")
@json_option
@pass_forge
def review(forge: Any, run_id: str | None, approve_ids: tuple[str, ...], reject_ids: tuple[str, ...],
           edit_id: str | None, completion: str | None, new_prompt: str | None, reason: str | None,
           reviewer: str | None, export_path: Path | None, import_path: Path | None, list_only: bool,
           as_json: bool) -> None:
    """The Warden's review queue: decide examples and promotions a policy sent to a human.

    Without an action, in a terminal: one item at a time, single keys a/r/e/s/q; resumable
    (what you did not decide stays pending). RUN limits the queue to one run.
    """
    from forgemind_hookspecs import UserError

    if run_id is not None:  # a mistyped RUN is an error, not an empty queue
        details = forge.show(run_id)
        if details is None:
            raise UserError(f"no run {run_id!r} in the registry at {forge.home}")
        run_id = details["run"]["id"]  # a unique prefix names the run, as in forge show
    acted: list[dict[str, Any]] = []
    for item in approve_ids:
        acted.append(forge.review(item, "approve", reason=reason, reviewer=reviewer))
    for item in reject_ids:
        acted.append(forge.review(item, "reject", reason=reason, reviewer=reviewer))
    if edit_id is not None:
        edit = {k: v for k, v in (("completion", completion), ("prompt", new_prompt)) if v is not None}
        if not edit:
            raise UserError("--edit needs --completion and/or --prompt", field="edit")
        acted.append(forge.review(edit_id, "edit", reason=reason, reviewer=reviewer, edit=edit))
    if import_path is not None:
        acted.extend(forge.import_reviews(import_path, reviewer=reviewer))
    if export_path is not None:
        count = forge.export_reviews(export_path, run_id)
        if not as_json:
            console().print(f"wrote {count} pending items to {export_path}; fill in each line's "
                            f"'decision' ({{\"action\": \"approve|reject|edit\", \"reason\": ...}}) and "
                            f"run forge review --import {export_path}")
    if acted or export_path is not None:
        if as_json:
            echo_json({"decided": acted, "exported": str(export_path) if export_path else None})
        elif acted:
            for row in acted:
                console().print(f"{row['item_id']}: {row['action']} by {row['reviewer']}")
        return
    if list_only or as_json or not (sys.stdin.isatty() and sys.stdout.isatty()):
        rows = forge.review_queue(run_id)
        echo_json(rows) if as_json else _print_queue(rows)
        return
    _interactive(forge, run_id, reviewer)


@click.command("approve")
@click.argument("checkpoint")
@click.option("--reviewer", help="Who approves (default: $USER).")
@click.option("--reason", default="", help="Recorded with the approval.")
@json_option
@pass_forge
def approve_command(forge: Any, checkpoint: str, reviewer: str | None, reason: str, as_json: bool) -> None:
    """Approve a candidate's promotion to stable (a policy with approval_required); the
    approval, the reviewer and the time are recorded, then the checkpoint is promoted."""
    row = forge.approve(checkpoint, reviewer=reviewer, reason=reason)
    if as_json:
        echo_json(row)
        return
    console().print(f"approved by {row['reviewer']}: checkpoint {row['subject_id']} promoted to stable "
                    f"(trace it: forge lineage {row['subject_id']})")
