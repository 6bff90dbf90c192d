"""Commands of the Brain and the Lorekeeper: run, resume, status, runs, show, lineage, plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from forgemind_core.cli.display import finish_run, run_reporter
from forgemind_core.cli.tools import console, echo_json, json_option, pass_forge

__all__ = ["lineage", "plugins", "resume", "run", "runs", "show", "status"]


@click.command()
@click.argument("goal_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-id", help="Choose the run id (default: goal name, time and a random suffix).")
@json_option
@pass_forge
def run(forge: Any, goal_file: Path, run_id: str | None, as_json: bool) -> None:
    """Run a goal: plan, generate, filter, train, evaluate, decide - until promoted or stopped.

    Exit code 0 when a model was promoted to the stable channel, 1 when the run stopped without
    meeting its goal, 2 for a bad goal file.
    """
    from forgemind_hookspecs import UserError

    if not goal_file.exists():
        raise UserError(f"{goal_file}: no such goal file")
    goal = forge.load_goal(goal_file)
    summary = forge.run(goal, run_id=run_id, reporter=run_reporter(as_json))
    finish_run(summary, as_json)


@click.command()
@click.argument("run_id")
@json_option
@pass_forge
def resume(forge: Any, run_id: str, as_json: bool) -> None:
    """Resume a run from its last finished stage (nothing finished is redone or paid again).

    A run that has finished already is left as it is: one line says so, exit code 0.
    """
    from forgemind_hookspecs import UserError

    try:
        finished = forge.status(run_id).get("status") == "finished"
    except UserError:  # no state yet: forge.resume says whether the run exists
        finished = False
    summary = forge.resume(run_id, reporter=run_reporter(as_json))
    if not finished:
        finish_run(summary, as_json)
    elif as_json:
        echo_json(summary)
    else:
        click.echo(f"run {run_id} finished already ({summary.get('outcome')}): nothing to resume; "
                   f"`forge show {run_id}` shows it, `forge fork {run_id}` starts a changed copy")


@click.command()
@click.argument("run_id")
@json_option
@pass_forge
def status(forge: Any, run_id: str, as_json: bool) -> None:
    """Where a run stands (read from its folder; works while the run is writing)."""
    state = forge.status(run_id)
    if as_json:
        echo_json(state)
        return
    out = console()
    who = f" (driven by pid {state['driven_by_pid']})" if state.get("driven_by_pid") else ""
    out.print(f"run {state['run_id']}: {state.get('status')}{who}, iteration {state.get('iteration')}, "
              f"last finished stage '{state.get('stage') or '-'}', spent ${state.get('spent_usd', 0.0):.4f}")
    for item in state["iterations"]:
        scores = " ".join(f"{t} {s:.0%}" for t, s in item["scores"].items())
        out.print(f"  iteration {item['iteration']}: {', '.join(item['stages_done'])}  {scores}")
    if state.get("outcome"):
        out.print(f"outcome: {state['outcome']} - " + "; ".join(state.get("reasons") or []))


@click.command()
@click.option("--tree", is_flag=True,
              help="Show runs as a tree: forks under their parent, successors under the run whose model taught them.")
@json_option
@pass_forge
def runs(forge: Any, tree: bool, as_json: bool) -> None:
    """List runs recorded in the registry."""
    if tree:
        _print_tree(forge.runs_tree(), as_json)
        return
    rows = forge.runs()
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table()
    columns = ["run_id", "goal", "status", "outcome", "iterations", "started"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console().print(table)


def _print_tree(roots: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        echo_json(roots)
        return
    from rich.tree import Tree

    def label(node: dict[str, Any]) -> str:
        at = f" @ iteration {node['parent_iteration']}" if node.get("parent_iteration") else ""
        return (f"[bold]{node['branch']}[/bold]{at}: {node['id']} ({node['status']}, "
                f"{node.get('outcome') or '-'})")

    def taught(node: dict[str, Any], teacher_run: str) -> str:
        """``<- labelled by ckpt-3f2a9c1 (colors v1)``: the edges from the teacher run's checkpoints."""
        parts = [f"{'+'.join(t['edges'])} by {t['checkpoint'][:12]}"
                 + (f" ({t['goal']} v{t['version']})" if t.get("goal") and t.get("version") else "")
                 for t in node.get("teachers") or [] if t.get("run") == teacher_run]
        return f"\n<- {', '.join(parts)}" if parts else ""  # its own line: an 80-column tree crops

    def add(parent: Any, node: dict[str, Any], teacher_run: str | None = None) -> None:
        text = label(node)
        if teacher_run is not None:  # the next generation: its data came from this run's model
            text = f"successor {text}{taught(node, teacher_run)}"
        branch = parent.add(text)
        for child in node["children"]:
            add(branch, child)
        for successor in node.get("successors") or []:
            add(branch, successor, node["id"])

    top = Tree("runs")
    for root in roots:
        add(top, root)
    console().print(top)


@click.command()
@click.argument("run_id")
@click.option("--rejections", is_flag=True, help="List every dropped example with the rule and reason.")
@click.option("--config", "config", is_flag=True,
              help="Print the goal file that produced the run (or --iteration N); it runs again as is.")
@click.option("--iteration", "-i", type=int, help="With --config: pin the recorded plans up to this iteration.")
@json_option
@pass_forge
def show(forge: Any, run_id: str, rejections: bool, config: bool, iteration: int | None, as_json: bool) -> None:
    """Show a run: its iterations with plans, scores and decisions (or its rejected data)."""
    from forgemind_hookspecs import UserError

    if config or iteration is not None:
        text = forge.config(run_id, iteration)
        if as_json:
            echo_json({"run_id": run_id, "iteration": iteration, "goal_yaml": text})
        else:
            click.echo(text, nl=False)
        return
    registry = forge.registry()
    if rejections:
        rows = registry.rejections(run_id)
        if as_json:
            echo_json(rows)
            return
        from rich.table import Table

        table = Table(title=f"rejections of {run_id} ({len(rows)})", title_justify="left")
        for column in ("iteration", "filter", "rule", "score", "reason", "example"):
            table.add_column(column, overflow="fold")
        for row in rows:
            prompt = str(row.get("prompt") or row.get("example_id") or "")
            table.add_row(str(row.get("iteration", "")), str(row.get("filter", "")), str(row.get("rule", "")),
                          "" if row.get("score") is None else f"{row['score']:.3g}", str(row.get("reason", "")),
                          prompt[:80].replace("\n", " "))
        console().print(table)
        return
    details = registry.run(run_id)
    if details is None:
        raise UserError(f"no run {run_id!r} in the registry at {forge.home}")
    if as_json:
        echo_json(details)
        return
    out = console()
    out.print_json(data=details, default=str)


@click.command()
@click.argument("node_id")
@json_option
@pass_forge
def lineage(forge: Any, node_id: str, as_json: bool) -> None:
    """Trace a checkpoint (or dataset, example, run) back to its data and forward to its uses."""
    data = forge.lineage(node_id)
    if as_json:
        echo_json(data)
        return
    from rich.tree import Tree

    tree = Tree(f"[bold]{node_id}[/bold]")
    _add(tree.add("ancestors"), data.get("ancestors"))
    _add(tree.add("descendants"), data.get("descendants"))
    console().print(tree)


def _add(node: Any, value: Any, depth: int = 0) -> None:
    if depth > 6:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                _add(node.add(str(key)), item, depth + 1)
            else:
                node.add(f"{key}: {item}")
    elif isinstance(value, list):
        for item in value[:50]:
            _add(node, item, depth + 1) if isinstance(item, (dict, list)) else node.add(str(item))
        if len(value) > 50:
            node.add(f"... {len(value) - 50} more")
    elif value is not None:
        node.add(str(value))


@click.command()
@click.option("--all", "include_builtins", is_flag=True, help="Include the kernel's built-in plugins.")
@json_option
@pass_forge
def plugins(forge: Any, include_builtins: bool, as_json: bool) -> None:
    """List installed plugins with their version and the backends they offer per pillar."""
    rows = forge.plugins(include_builtins=include_builtins)
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table()
    for column in ("plugin", "version", "backends", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        backends = "; ".join(f"{pillar}: {', '.join(names)}" for pillar, names in row["backends"].items())
        state = f"[red]failed: {row['error']}[/red]" if row["error"] else ("built-in" if row["builtin"] else "ok")
        table.add_row(row["name"], row["version"] or "", backends, state)
    console().print(table)
