"""Hardening of the CLI and the records (issue 22, points 4, 5 and 6): resuming a finished run,
a relative home, credentials in a base_url, `forge review` of an unknown run, `--home` after
the subcommand."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click
import kernel_plugins
import pytest
from click.testing import CliRunner
from forgemind_hookspecs import hookimpl

from forgemind_core import Forge
from forgemind_core.api import HOME_ENV
from forgemind_core.cli.main import build_cli
from forgemind_core.cli.tools import pass_forge


def _forge(home, *plugins):
    return Forge(home=home, plugins=[kernel_plugins, *plugins], blocked=["hf"])


def invoke(forge, *args):
    return CliRunner().invoke(build_cli(forge), [str(a) for a in args], catch_exceptions=False)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _recorded_strings(home: Path):
    """Every string of every JSON record and journal line under ``home``."""
    for path in sorted(home.rglob("*.json")) + sorted(home.rglob("*.jsonl")):
        if path.suffix == ".json":
            yield from ((path, s) for s in _strings(json.loads(path.read_text())))
        else:
            for line in path.read_text().splitlines():
                yield from ((path, s) for s in _strings(json.loads(line)))


# --- 4. resuming a finished run -----------------------------------------------------------------


def test_resuming_a_finished_run_says_so_and_changes_nothing(forge_home, colors_goal):
    forge = _forge(forge_home)
    forge.run(colors_goal, run_id="done")
    events_before = forge.sql("SELECT kind FROM events WHERE run_id = 'done' ORDER BY seq")
    state_before = (forge_home / "runs" / "done" / "state.json").read_text()

    result = invoke(forge, "resume", "done")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "run done finished already (promoted): nothing to resume; `forge show done` shows it, "
        "`forge fork done` starts a changed copy")
    assert [r["status"] for r in forge.runs()] == ["finished"]
    assert forge.sql("SELECT kind FROM events WHERE run_id = 'done' ORDER BY seq") == events_before
    assert (forge_home / "runs" / "done" / "state.json").read_text() == state_before
    as_json = invoke(forge, "resume", "done", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["outcome"] == "promoted"
    assert [r["status"] for r in forge.runs()] == ["finished"]


def test_resume_records_the_finish_a_killed_process_did_not(forge_home, colors_goal):
    """state.json says finished but the process died before run.finished reached the registry."""
    forge = _forge(forge_home)
    forge.run(colors_goal, run_id="cut")
    journal = forge_home / "registry" / "journal" / "cut.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["kind"] == "run.finished"
    (forge_home / "registry").joinpath("registry.duckdb").unlink()  # re-ingested from the journal
    journal.write_text("".join(lines[:-1]))
    assert [r["status"] for r in forge.runs()] == ["running"]
    assert invoke(forge, "resume", "cut").exit_code == 0
    assert [(r["status"], r["outcome"]) for r in forge.runs()] == [("finished", "promoted")]


# --- 5. a relative home -------------------------------------------------------------------------


def test_a_relative_home_stores_absolute_paths_usable_from_another_folder(tmp_path, monkeypatch, colors_goal):
    monkeypatch.delenv(HOME_ENV, raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    forge = _forge(".forgemind")
    assert forge.home == first / ".forgemind"
    forge.home = "elsewhere"
    assert forge.home == first / "elsewhere"
    forge.home = ".forgemind"
    summary = forge.run(colors_goal, run_id="rel")
    relative = {s for _, s in _recorded_strings(first / ".forgemind") if s.startswith(".forgemind")}
    assert not relative, sorted(relative)[:5]

    monkeypatch.chdir(second)  # the same home, used from another working directory
    again = _forge(first / ".forgemind")
    stable = again.show("rel")["run"]["stable_checkpoint"]
    checkpoint = again.registry().checkpoint(stable)["checkpoint"]
    assert Path(checkpoint["path"]).is_absolute() and (Path(checkpoint["path"]) / "model.json").is_file()
    report = again.evaluate(stable, [{"input": "paint it red please", "expected": "warm"}], runner="memo",
                            scorer="label_match")
    assert report.metrics["accuracy"] == 1.0
    assert summary["stable_checkpoint"]["id"] == stable


# --- 6a. a credential in a base_url -------------------------------------------------------------


def _openai_goal(goal: Path, base_url: str) -> None:
    text = goal.read_text().replace(
        "  - backend: template\n    share: 1.0\n",
        f"  - backend: openai\n    share: 1.0\n    model: teacher\n    base_url: \"{base_url}\"\n"
        "    http_client: httpx\n    examples_per_call: 4\n    concurrency: 1\n",
    ).replace("max_iterations: 3", "max_iterations: 2").replace("threshold: 0.9", "threshold: 0.99")
    goal.write_text(text)


def test_url_credentials_are_never_recorded_and_still_reach_the_server(forge_home, colors_goal):
    from forgemind_openai.testing import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        url = server.base_url.replace("http://", "http://fm-user:hunter2-secret@")
        _openai_goal(colors_goal, url)
        forge = _forge(forge_home)
        summary = forge.run(colors_goal, run_id="cred")
        assert len(summary["iterations"]) == 2  # iteration 2's plan was read back from a record
        files = [p for p in forge_home.rglob("*") if p.is_file()]
        assert any(p.name == "registry.duckdb" for p in files) and any(p.name == "plan.json" for p in files)
        leaks = [str(p) for p in files if b"hunter2" in p.read_bytes() or b"fm-user" in p.read_bytes()]
        assert not leaks, leaks
        goal = json.loads((forge_home / "runs" / "cred" / "goal.json").read_text())
        recorded_url = goal["generate"][0]["options"]["base_url"]
        assert recorded_url == server.base_url.replace("http://", "http://[REDACTED]@")
        plan = json.loads((forge_home / "runs" / "cred" / "iter-2" / "plan.json").read_text())
        assert "[REDACTED]@" in json.dumps(plan)
        # every request of both iterations carried the credential of the goal file
        basic = "Basic " + base64.b64encode(b"fm-user:hunter2-secret").decode()
        assert server.total_requests >= 2 and set(server.api_keys) == {basic}


def test_resuming_a_run_reads_its_credential_from_the_goal_file(forge_home, colors_goal):
    from forgemind_openai.testing import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        _openai_goal(colors_goal, server.base_url.replace("http://", "http://fm-user:hunter2-secret@"))
        forge = _forge(forge_home)
        loop_goal = forge.load_goal(colors_goal)
        from forgemind_core.brain.loop import Loop

        Loop.start(forge, loop_goal, run_id="later")  # created, killed before its first stage
        forge.resume("later")
        basic = "Basic " + base64.b64encode(b"fm-user:hunter2-secret").decode()
        assert server.total_requests >= 1 and set(server.api_keys) == {basic}


def test_url_credentials_the_aiohttp_transport_cannot_send_fail_validation(forge_home, colors_goal):
    _openai_goal(colors_goal, "https://user:pass@host.invalid/v1")
    colors_goal.write_text(colors_goal.read_text().replace("    http_client: httpx\n", ""))
    result = invoke(_forge(forge_home), "validate", colors_goal)
    assert result.exit_code == 2
    assert "base_url carries credentials (user:password@), which the aiohttp transport" in result.output
    assert "pass@" not in result.output and "Traceback" not in result.output


# --- 6d. forge review of an unknown run ---------------------------------------------------------


def test_review_of_an_unknown_run_is_an_error(forge_home, colors_goal):
    forge = _forge(forge_home)
    forge.run(colors_goal, run_id="known")
    result = invoke(forge, "review", "nosuch", "--list")
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: no run 'nosuch' in the registry at {forge_home}"
    assert invoke(forge, "review", "kno", "--json").exit_code == 0  # a unique prefix still names it


# --- 6e. --home after the subcommand ------------------------------------------------------------


class _WherePlugin:
    """A plugin command that shows which home it was given (the kernel's and the environment's)."""

    @hookimpl
    def forgemind_register_commands(self, cli):
        @cli.command("where")
        @pass_forge
        def where(forge):
            import os

            click.echo(f"{forge.home} {os.environ.get(HOME_ENV)}")


def _paths(command, prefix=()):
    yield (*prefix, command.name)
    for sub in getattr(command, "commands", {}).values():
        yield from _paths(sub, (*prefix, command.name))


def test_every_command_takes_home_after_its_name(forge_home, tmp_path, monkeypatch):
    forge = _forge(forge_home, _WherePlugin())
    cli = build_cli(forge)
    paths = [p for command in cli.commands.values() for p in _paths(command)]
    assert {("run",), ("sql",), ("jobs", "show"), ("where",)} <= set(paths)
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--home", str(tmp_path / "x"), "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "--home" in result.output, path

    other = tmp_path / "other"
    monkeypatch.delenv(HOME_ENV, raising=False)
    where = invoke(_forge(forge_home, _WherePlugin()), "where", "--home", other)
    assert where.output.split() == [str(other), str(other)]
    import os

    assert HOME_ENV not in os.environ  # the environment is restored after the command
    runs = invoke(_forge(forge_home), "runs", "--json", "--home", other)
    assert runs.exit_code == 0 and json.loads(runs.stdout) == []
    assert (other / "registry" / "registry.duckdb").is_file()


@pytest.mark.parametrize("where", ["before", "after"])
def test_home_before_or_after_the_subcommand_is_the_same(forge_home, colors_goal, tmp_path, where):
    _forge(forge_home).run(colors_goal, run_id="h")
    forge = Forge(home=tmp_path / "unused", plugins=[kernel_plugins], blocked=["hf"])
    args = ["--home", forge_home, "status", "h", "--json"] if where == "before" else \
        ["status", "h", "--json", "--home", forge_home]
    result = invoke(forge, *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "finished"
