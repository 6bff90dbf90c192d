"""``forge jobs``: background jobs (what the dashboard starts), listed, followed and submitted."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from forgemind_core.cli.tools import echo_json, json_option, key_values, pass_forge

__all__ = ["checkpoints", "jobs"]


@click.group("jobs", invoke_without_command=True)
@json_option
@click.pass_context
def jobs(ctx: click.Context, as_json: bool) -> None:
    """Background jobs: runs and trainings started by the dashboard or `forge jobs submit`.

    Without a subcommand: list them, newest first.
    """
    if ctx.invoked_subcommand is not None:
        return
    forge = ctx.find_root().obj
    rows = forge.jobs()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no jobs")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.get("created") or 0))
        click.echo(f"{row['id']}  {row['kind']:<8} {row['status']:<11} {when}  {row.get('error') or ''}".rstrip())


def _line(event: dict[str, Any]) -> str:
    payload = event.get("payload") or {}
    if event.get("kind") == "metric":
        return f"{payload.get('name')} = {payload.get('value'):.4g} (step {payload.get('step')})"
    keys = ", ".join(f"{k}={v}" for k, v in payload.items() if isinstance(v, (str, int, float)) and k != "iteration")
    return f"{event.get('kind')} {keys}".rstrip()


@jobs.command("show")
@click.argument("job_id")
@click.option("--follow", is_flag=True, help="Keep printing events until the job ends.")
@json_option
@pass_forge
def show_job(forge: Any, job_id: str, follow: bool, as_json: bool) -> None:
    """A job's status, result and events (exit 1 if it failed or was interrupted)."""
    printed = 0
    while True:
        data = forge.job(job_id)
        if not as_json:
            for event in data["events"][printed:]:
                click.echo(_line(event))
            printed = len(data["events"])
        if not follow or data["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    if as_json:
        echo_json(data)
    else:
        click.echo(f"{data['id']}: {data['status']}" + (f" - {data['error']}" if data.get("error") else ""))
        if data.get("result") is not None:
            click.echo(json.dumps(data["result"], indent=1, default=str)[:4000])
    if data["status"] in ("failed", "interrupted"):
        click.get_current_context().exit(1)


@jobs.command("submit")
@click.argument("kind")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of the job (VALUE parsed as JSON when it parses), e.g. -p goal=goal.yaml.")
@json_option
@pass_forge
def submit_job(forge: Any, kind: str, params: tuple[str, ...], as_json: bool) -> None:
    """Start KIND (run, resume, pretrain, train, estimate, evaluate, compare) in its own process.

    \b
    forge jobs submit run -p goal=examples/python-security/goal.yaml
    forge jobs submit train -p base=BASE -p data=train.jsonl -p method=lora -p 'hyperparameters={"epochs": 1}'
    forge jobs show JOB --follow
    """
    job_id = forge.submit(kind, key_values(params, "param"), detach=True)
    if as_json:
        echo_json({"job": job_id})
    else:
        click.echo(f"job {job_id} started; follow it with: forge jobs show {job_id} --follow")


@click.command("checkpoints")
@json_option
@pass_forge
def checkpoints(forge: Any, as_json: bool) -> None:
    """Every checkpoint of this home: recorded by runs, fine-tuned or pre-trained outside one."""
    rows = forge.checkpoints()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no checkpoints")
    for row in rows:
        where = f"{row['run_id']}#{row['iteration']}" if row.get("run_id") else row["source"]
        click.echo(f"{row['id']}  {row.get('method') or '-':<6} {where:<32} {row['path']}")
