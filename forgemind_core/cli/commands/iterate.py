"""Iteration tools: fork, diff, sql, export-data, export (docs/iteration.md, docs/export.md).

Each command is a thin shell over a :class:`~forgemind_core.api.Forge` method, which the
dashboard calls too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from forgemind_core.cli.tools import console, echo_json, json_option, pass_forge

__all__ = ["diff_command", "export_command", "export_data_command", "fork", "sql_command"]


@click.command()
@click.argument("run_id")
@click.option("--iteration", "-i", type=int, help="Fork at this iteration (default: the run's last).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Change one goal setting (dotted, as in the goal file): --set train.epochs=3. Repeatable.")
@click.option("--branch", help="Name the new branch (default: from the changed settings).")
@click.option("--run-id", "new_run_id", help="Choose the new run's id.")
@click.option("--no-run", is_flag=True, help="Create the fork without running it (`forge resume` runs it).")
@json_option
@pass_forge
def fork(forge: Any, run_id: str, iteration: int | None, sets: tuple[str, ...], branch: str | None,
         new_run_id: str | None, no_run: bool, as_json: bool) -> None:
    """Start a new run from RUN's work up to an iteration, changing only what --set says.

    Finished stages up to the fork point are reused (data, checkpoints, evaluations: linked in
    the registry, not copied); only the stages the changed settings affect run again.
    """
    from forgemind_core.brain.forks import parse_overrides
    from forgemind_core.cli.display import finish_run, run_reporter

    summary = forge.fork(run_id, iteration, parse_overrides(sets), branch, new_run_id=new_run_id,
                         run=not no_run, reporter=None if no_run else run_reporter(as_json))
    if no_run:
        if as_json:
            echo_json(summary)
        else:
            console().print(f"forked {run_id} -> {summary['run_id']}; run it with: forge resume {summary['run_id']}")
        return
    finish_run(summary, as_json)


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@json_option
@pass_forge
def diff_command(forge: Any, run_a: str, run_b: str, as_json: bool) -> None:
    """Show how two runs differ: goal settings, outcome, and per iteration data, model, scores."""
    data = forge.diff(run_a, run_b)
    if as_json:
        echo_json(data)
        return
    from rich.table import Table

    out = console()
    table = Table(title="config", title_justify="left")
    for column in ("setting", run_a, run_b):
        table.add_column(column, overflow="fold")
    for row in data["config"]:
        table.add_row(row["key"], _cell(row["a"]), _cell(row["b"]))
    if not data["config"]:
        table.add_row("(same goal)", "", "")
    out.print(table)
    results = Table(title="results", title_justify="left")
    for column in ("", run_a, run_b):
        results.add_column(column, overflow="fold")
    for key, pair in data["results"].items():
        results.add_row(key, _cell(pair["a"]), _cell(pair["b"]))
    out.print(results)
    its = Table(title="iterations", title_justify="left")
    for column in ("iteration", f"{run_a} scores", f"{run_b} scores", "data", "model"):
        its.add_column(column, overflow="fold")
    for item in data["iterations"]:
        its.add_row(
            str(item["iteration"]),
            _scores(item["a"]),
            _scores(item["b"]),
            "shared" if item["same_dataset"] else "different",
            "shared" if item["same_checkpoint"] else "different",
        )
    out.print(its)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _scores(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    scores = " ".join(f"{t} {s:.0%}" for t, s in (side.get("scores") or {}).items())
    return f"{scores} ({side.get('decision') or '-'})"


@click.command("sql")
@click.argument("query")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop the query after this long (default 10; 0: no limit). It holds the registry "
                   "while it runs: readers and the run's ingest wait for it.")
@click.option("--max-rows", type=click.IntRange(min=0), help="Refuse a result of more rows (default 10000; 0: no cap).")
@click.option("--memory-limit", metavar="SIZE", help="DuckDB's memory limit for the query (default 1GB), e.g. 4GB.")
@json_option
@pass_forge
def sql_command(forge: Any, query: str, timeout_s: float | None, max_rows: int | None, memory_limit: str | None,
                as_json: bool) -> None:
    """Run one read-only SQL query over the registry (tables: docs/registry.md); writes are refused.

    The query is bounded in time, rows and memory (options below); past a limit it is stopped
    and the error says which limit to raise.
    """
    rows = forge.sql(query, timeout_s=timeout_s, max_rows=max_rows, memory_limit=memory_limit)
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table()
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console().print(table)
    console().print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


@click.command("export-data")
@click.argument("node_id")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl", "alpaca", "sharegpt", "messages"]),
              default="parquet", show_default=True,
              help="Tables (parquet, jsonl), or a dataset as JSON Lines in a preset of the field (docs/export.md).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the files into (created).")
@json_option
@pass_forge
def export_data_command(forge: Any, node_id: str, fmt: str, out: Path, as_json: bool) -> None:
    """Write a dataset (its examples), a checkpoint's evaluation results, or a run's history
    (iterations, examples, verdicts, datasets, checkpoints, evaluation results, metrics,
    decisions, events) as Parquet or JSON Lines files that other tools read."""
    written = forge.export_data(node_id, out, format=fmt)
    if as_json:
        echo_json(written)
        return
    for item in written["files"]:
        console().print(f"{item['rows']:>8} rows  {item['path']}")


@click.command("export")
@click.argument("checkpoint_id")
@click.option("--target", type=click.Choice(["hf", "ollama", "gguf"]), required=True,
              help="hf: a transformers folder; ollama: a Modelfile bundle; gguf: a GGUF file.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the bundle into (created; must be empty).")
@click.option("--author", help="Model card author (default: the goal's export.author).")
@click.option("--license", "license_", help="SPDX-style licence id, e.g. apache-2.0 (default: the goal's).")
@click.option("--version", "version", help="Version of this model, e.g. 1.0.0 (default: the goal's).")
@click.option("--tag", "tags", multiple=True, help="A model card tag; repeatable (added to the goal's).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An exporter option, e.g. --option mode=adapter (see docs/export.md).")
@click.option("--push", "push", metavar="REPO_ID",
              help="Upload the bundle to this Hugging Face Hub repo (--target hf; token from HF_TOKEN).")
@click.option("--private", is_flag=True, help="With --push: create the repo private.")
@json_option
@pass_forge
def export_command(forge: Any, checkpoint_id: str, target: str, out: Path, author: str | None,
                   license_: str | None, version: str | None, tags: tuple[str, ...], options: tuple[str, ...],
                   push: str | None, private: bool, as_json: bool) -> None:
    """Export a checkpoint as a bundle: the model (safetensors or GGUF), its tokenizer and chat
    template, forge.yaml (the goal and plans that made it) and a model card README.md."""
    from forgemind_core.brain.forks import parse_overrides

    metadata: dict[str, Any] = {k: v for k, v in
                                (("author", author), ("license", license_), ("version", version)) if v}
    if tags:
        metadata["tags"] = list(tags)
    result = forge.export(checkpoint_id, target, out, metadata=metadata, options=parse_overrides(options),
                          push=push, private=private)
    if as_json:
        echo_json(result)
        return
    console().print(f"exported {result['checkpoint_id']} as {target}: {result['path']}")
    for name in result["files"]:
        console().print(f"  {name}")
    if result.get("pushed"):
        console().print(f"pushed to {result['pushed']['repo_id']}: {result['pushed']['commit_url']}")
