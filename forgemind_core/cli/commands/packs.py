"""``forge pack check PACK``: what a pack author runs before paying for training.

It validates the pack as ``forge validate`` does (exit 2 with file:line on a mistake), then
generates a sample offline with the ``template`` generator (running the pack's ``python:``
generator function, if it has one), runs the ``rules`` filter and prints per category the
count, a few examples, the share dropped and why, and how many answers fail the pack's
``verify`` regex or checker. Nothing is trained or recorded. The work is
:func:`forgemind_core.foundry.packcheck.check_pack`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from forgemind_core.cli.tools import console, echo_json, json_option, pass_forge

if TYPE_CHECKING:  # forge --help must not import the API
    from forgemind_core.api import Forge

__all__ = ["pack_group"]


@click.group("pack")
def pack_group() -> None:
    """Task packs: check a pack before training on it."""


@pack_group.command("check")
@click.argument("pack_dir", metavar="PACK", type=click.Path(path_type=Path))
@click.option("--n", "count", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
              help="Examples to generate.")
@click.option("--strategy", type=click.Choice(("basic", "varied", "mixed")), default="mixed", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--examples", "shown", type=click.IntRange(0, 50), default=2, show_default=True,
              help="Examples shown per category.")
@json_option
@pass_forge
def check_command(forge: Forge, pack_dir: Path, count: int, strategy: str, seed: int, shown: int,
                  as_json: bool) -> None:
    """Generate a sample of PACK without training: counts, drops and why, verify failures.

    \b
    forge pack check examples/unit-normalise --n 1000
    """
    from forgemind_hookspecs import to_dict

    from forgemind_core.cli.commands.validate import problem_dict
    from forgemind_core.foundry.packcheck import check_pack, pack_problems
    from forgemind_core.foundry.packs import load_pack

    problems = pack_problems(pack_dir, tuple(forge.catalogue().get("scorers", {})))
    if problems:
        if as_json:
            echo_json({"ok": False, "problems": [problem_dict(p) for p in problems]})
        else:
            for problem in problems:
                click.echo(str(problem), err=True)
        click.get_current_context().exit(2)
    pack = load_pack(pack_dir)
    checker = None
    if "checker" in pack.verify:
        checker = forge.backend("scorers", pack.verify["checker"], None, field="verify.checker")
    result = check_pack(pack, n=count, strategy=strategy, seed=seed, shown=shown, checker=checker)
    if as_json:
        echo_json({"ok": True, **to_dict(result), "made": result.made, "dropped": result.dropped,
                   "verify_failed": result.verify_failed})
        return
    _print(result)


def _print(result: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    table = Table(title=f"{escape(result.pack)}: {result.made} of {result.wanted} made ({result.strategy})",
                  title_justify="left")
    for column, justify in (("category", "left"), ("made", "right"), ("dropped", "right"),
                            ("why dropped", "left"), ("verify failed", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in result.categories:
        share = f"{row.dropped} ({row.dropped / row.made:.0%})" if row.made else "0"
        why = "; ".join(f"{n}× {reason}" for reason, n in row.reasons.items()) or "-"
        failed = str(row.verify_failed) if result.verify else "-"
        table.add_row(escape(row.category), str(row.made), share, escape(why), failed)
    out.print(table)
    for row in result.categories:
        out.print(f"[bold]{escape(row.category)}[/]")
        for text, completion in row.examples:
            out.print(f"  {escape(_short(text))}  [dim]->[/] {escape(completion.strip())}")
        for text, completion in row.verify_examples:
            out.print(f"  [red]verify fails[/] {escape(_short(text))}  [dim]->[/] {escape(completion.strip())}")
    verify = ", ".join(f"{k} {v!r}" for k, v in result.verify.items()) or "none declared"
    dropped = result.dropped / result.made if result.made else 0.0
    out.print(f"made {result.made}  dropped {result.dropped} ({dropped:.1%})  "
              f"verify ({escape(verify)}): {result.verify_failed} failed")


def _short(text: str, n: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"
