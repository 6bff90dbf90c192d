"""Commands of the Brain and the Lorekeeper: run, resume, status, runs, show, lineage, plugins."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from forgemind_core.cli.display import decision_reasons, finish_run, print_summary, run_reporter, summary_plot
from forgemind_core.cli.tools import console, echo_json, json_option, pass_forge

__all__ = ["lineage", "plugin_additions", "plugins", "resume", "run", "running_line", "runs", "show", "status"]

#: What a plugin adds through a hook other than a backend registration, as ``forge plugins`` says it.
_HOOK_ADDS = {"forgemind_registry": "the registry (forge show, lineage, sql)", "forgemind_record": "a recorder"}


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
    running = state.get("running")
    if running:
        out.print(f"  running: {running_line(running)}")
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
    from rich import box
    from rich.table import Table

    from forgemind_core.lorekeeper.readouts import RUN_COLUMNS, run_rows

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in RUN_COLUMNS:
        table.add_column(column, overflow="fold", no_wrap=column not in ("run_id", "goal"),
                         min_width=10 if column in ("run_id", "goal") else None,
                         justify="right" if column == "iters" else "left")
    for row in run_rows(rows):
        table.add_row(*(row[c] for c in RUN_COLUMNS))
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
@click.option("--plot", is_flag=True, help="Draw the loss per step of each iteration and each tier's score per iteration.")
@json_option
@pass_forge
def show(forge: Any, run_id: str, rejections: bool, config: bool, iteration: int | None, plot: bool,
         as_json: bool) -> None:
    """Show a run: its summary table (plan, data, scores per tier, loss, seconds, cost, decision
    per iteration), or --plot, its rejected data (--rejections), its goal file (--config);
    --json prints everything the registry holds about it."""
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
    summary = forge.summary(details["run"]["id"])
    if plot:
        click.echo(summary_plot(summary, width=min(console().width, 100), color=console().is_terminal), nl=False)
        return
    print_summary(summary, sections=(decision_reasons, _failure_section(forge.home, summary["run_id"])))


def _failure_section(home: Any, run_id: str) -> Any:
    """A summary section: what is wrong inside each iteration's failures (the Trial Grounds'
    failure analysis of its evaluate stage, docs/trial-grounds.md), a line per finding."""

    def section(summary: Mapping[str, Any], out: Any) -> None:
        from rich.markup import escape

        from forgemind_core.base.runfolder import RunFolder
        from forgemind_core.trials.analysis import tier_findings

        folder = RunFolder(Path(home), run_id)
        for item in summary["iterations"]:
            reports = folder.eval_reports(int(item["iteration"]))
            if reports is None:
                continue
            for tier, what, finding in tier_findings(reports, limit=3):
                out.print(f"iteration {item['iteration']} {tier}: {escape(what)}: {escape(finding)}")

    return section


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
    from rich.text import Text
    from rich.tree import Tree

    from forgemind_core.lorekeeper.readouts import TreeNode, lineage_tree

    def draw(parent: Any, node: TreeNode) -> None:
        for child in node["children"]:
            draw(parent.add(Text(child["label"], overflow="fold")), child)

    root = lineage_tree(forge.registry(), forge.home, data)
    tree = Tree(Text(root["label"], style="bold", overflow="fold"))
    draw(tree, root)
    console().print(tree, soft_wrap=False)


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
    adds = plugin_additions(forge)
    for row in rows:
        offered = [f"{pillar}: {', '.join(names)}" for pillar, names in row["backends"].items()]
        backends = "; ".join(offered + adds.get(row["name"], [])) or "-"
        state = f"[red]failed: {row['error']}[/red]" if row["error"] else ("built-in" if row["builtin"] else "ok")
        table.add_row(row["name"], row["version"] or "", backends, state)
    console().print(table)


def plugin_additions(forge: Any) -> dict[str, list[str]]:
    """``{plugin: ["commands: dashboard", "the registry ...", "a recorder"]}``: what each plugin adds
    besides backends — the CLI commands its ``forgemind_register_commands`` adds (asked of the
    plugin with a scratch command group), the registry and recording hooks it implements."""
    out: dict[str, list[str]] = {}
    for impl in forge.hook.forgemind_register_commands.get_hookimpls():
        scratch = click.Group()
        try:
            impl.function(cli=scratch)
        except Exception as error:
            out.setdefault(impl.plugin_name, []).append(f"commands: failed to list ({error})")
            continue
        if scratch.commands:
            out.setdefault(impl.plugin_name, []).append(f"commands: {', '.join(sorted(scratch.commands))}")
    for hook, text in _HOOK_ADDS.items():
        for impl in getattr(forge.hook, hook).get_hookimpls():
            out.setdefault(impl.plugin_name, []).append(text)
    return out


def running_line(running: dict[str, Any]) -> str:
    """``train of iteration 2: step 40/120, train.loss 2.310, ETA 1m 20s`` for ``forge status``."""
    step = f"step {running['step']}" + (f"/{running['total_steps']}" if running.get("total_steps") else "")
    parts = [step]
    if running.get("loss") is not None:
        parts.append(f"{running['loss_name']} {running['loss']:.3f}")
    eta = running.get("eta_s")
    if eta is not None:
        minutes, seconds = divmod(round(eta), 60)
        parts.append(f"ETA {minutes}m {seconds:02d}s" if minutes else f"ETA {seconds}s")
    return f"{running['stage']} of iteration {running['iteration']}: " + ", ".join(parts)
